//! `/inspector` on `mandate serve`, for the people named in `inspector_operators`
//! (docs/INSPECTOR.md).

use mandate_core::AuthServer;

use crate::config::Config;

/// The inspector's routes, when anyone may use it. `suggestions`: the MCP URLs this server
/// serves (offered on the page).
pub fn router(config: &Config, auth: &std::sync::Arc<AuthServer>, suggestions: Vec<String>) -> Option<axum::Router> {
    if config.inspector_operators.is_empty() {
        return None;
    }
    // The server reaches loopback hosts for the inspector only when it is itself a loopback
    // server (development): elsewhere, an operator's URL must not reach the host's own services.
    let allow_loopback =
        url::Url::parse(&auth.settings.issuer).ok().is_some_and(|u| mandate_client::net::is_loopback_host(&u));
    Some(mandate_inspector::router(mandate_inspector::InspectorSettings {
        signed_in: mandate_server::SignedIn::new(auth.clone()),
        operators: config.inspector_operators.clone(),
        suggestions,
        allow_loopback,
    }))
}
