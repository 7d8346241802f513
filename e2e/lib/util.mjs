// Small helpers shared by the e2e suites.

/** Rejects with a clear message when `promise` has not settled within `ms`. */
export function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** A URL with every query value replaced by its length: safe to print (no codes or state). */
export function redactUrl(href) {
  try {
    const u = new URL(href);
    for (const [k, v] of [...u.searchParams]) {
      if (k !== 'scope' && k !== 'error' && k !== 'response_type' && k !== 'code_challenge_method') {
        u.searchParams.set(k, `<${v.length}>`);
      }
    }
    return decodeURIComponent(u.href);
  } catch {
    return '<unparseable url>';
  }
}

/** Space-separated scopes as a sorted array. */
export function scopes(s) {
  return (s ?? '').split(' ').filter(Boolean).sort();
}

/** The transcript: one line per event, printed as it happens. */
export function say(line) {
  process.stdout.write(`  | ${line}\n`);
}
