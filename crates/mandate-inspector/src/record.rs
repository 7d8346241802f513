//! What the client hands the inspector while it works: each HTTP exchange and JSON-RPC message
//! (masked before anything keeps them), and the authorization URL for the operator's browser,
//! whose response comes back through `/inspector/callback`.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::future::BoxFuture;
use mandate_client::callback::Callback;
use mandate_client::record::{mask_exchange, mask_json};
use mandate_client::{ClientError, Direction, ExternalSignIn, HttpExchange, Recorder};
use subtle::ConstantTimeEq;
use tokio::sync::oneshot;
use url::Url;

use crate::view::View;

/// The view shared by the page and the work in progress.
#[derive(Clone, Default)]
pub(crate) struct Shared(Arc<Mutex<View>>);

impl Shared {
    /// The view to change, even after a panic elsewhere left the lock poisoned (it holds only
    /// display data). Counts as a change: the view's revision moves on.
    pub(crate) fn lock(&self) -> MutexGuard<'_, View> {
        let mut view = self.read();
        view.revision = crate::view::next_revision();
        view
    }

    /// The view to read, as it is: its revision stays.
    pub(crate) fn read(&self) -> MutexGuard<'_, View> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Recorder for Shared {
    fn http(&self, exchange: HttpExchange) {
        self.lock().push_http(mask_exchange(exchange));
    }

    fn rpc(&self, direction: Direction, mut message: serde_json::Value) {
        mask_json(&mut message);
        self.lock().push_rpc(direction, message);
    }
}

/// The sign-in in progress: the `state` it waits for and where to deliver the response.
struct Waiting {
    state: String,
    deliver: oneshot::Sender<Callback>,
}

/// The inspector's way of reaching the person: the authorization URL goes on the page, and the
/// response arrives at `/inspector/callback` in the operator's own browser.
pub(crate) struct BrowserSignIn {
    redirect_uri: String,
    view: Shared,
    waiting: Mutex<Option<Waiting>>,
}

impl BrowserSignIn {
    pub(crate) fn new(redirect_uri: String, view: Shared) -> Self {
        Self { redirect_uri, view, waiting: Mutex::new(None) }
    }

    fn waiting(&self) -> MutexGuard<'_, Option<Waiting>> {
        self.waiting.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Hands an authorization response to the sign-in waiting for its `state`; false when none
    /// is (nothing waits, or the state is another's).
    pub(crate) fn deliver(&self, callback: Callback) -> bool {
        let mut waiting = self.waiting();
        let matches = match (&*waiting, callback.state.as_deref()) {
            (Some(w), Some(state)) => bool::from(w.state.as_bytes().ct_eq(state.as_bytes())),
            _ => false,
        };
        if !matches {
            return false;
        }
        match waiting.take() {
            Some(w) => w.deliver.send(callback).is_ok(),
            None => false,
        }
    }
}

impl ExternalSignIn for BrowserSignIn {
    fn redirect_uri(&self) -> String {
        self.redirect_uri.clone()
    }

    fn sign_in(&self, auth_url: Url, state: String, timeout: Duration) -> BoxFuture<'_, Result<Callback, ClientError>> {
        Box::pin(async move {
            let (deliver, arrived) = oneshot::channel();
            *self.waiting() = Some(Waiting { state, deliver });
            self.view.lock().awaiting_person(auth_url.as_str());
            let outcome = tokio::time::timeout(timeout, arrived).await;
            self.waiting().take();
            let mut view = self.view.lock();
            view.authorize_url = None;
            match outcome {
                Ok(Ok(callback)) => {
                    view.step(
                        "Authorization response received",
                        match (&callback.code, &callback.error) {
                            (Some(_), _) => "the browser came back to /inspector/callback with a code (hidden); \
                                             the client checks state and iss, then redeems it"
                                .to_owned(),
                            (None, Some(e)) => format!("the authorization server answered error={e}"),
                            (None, None) => "neither a code nor an error".to_owned(),
                        },
                    );
                    Ok(callback)
                }
                Ok(Err(_)) => Err(ClientError::Authorization("the sign-in was abandoned".into())),
                Err(_) => Err(ClientError::Authorization(format!(
                    "nobody completed the sign-in within {} s",
                    timeout.as_secs()
                ))),
            }
        })
    }
}
