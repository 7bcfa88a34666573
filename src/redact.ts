/**
 * Secrets never leave the process: every string that may carry a connection URL or
 * password (log lines, error messages, the status page) goes through `redactSecrets`.
 */

const URL_USERINFO = /\b(postgres(?:ql)?|https?|redis):\/\/([^:/?#@\s]+):([^@/?#\s]*)@/gi;
// key=value secrets as libpq and env files write them: password=x, password = 'two words', PGPASSWORD=x.
const PASSWORD_PARAM =
  /\b(\w*password|pass|pwd|token|apikey|api_key|service_role_key|secret)(\s*[=:]\s*)('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|[^&\s;'",}]+)/gi;

/** What a message shows where a password goes (ours, and Supabase's dashboard's): not secrets. */
const PLACEHOLDERS = new Set(['PASSWORD', '[YOUR-PASSWORD]', '<password>']);

/** Values known to be secret at run time (passwords parsed from the configured URLs). */
const knownSecrets = new Set<string>();

export function registerSecret(secret: string | undefined | null): void {
  if (secret && secret.length >= 3) {
    knownSecrets.add(secret);
    try {
      const enc = encodeURIComponent(secret);
      if (enc !== secret) knownSecrets.add(enc);
    } catch {
      // lone surrogates cannot be encoded; the raw form is registered already
    }
  }
}

export function redactSecrets(text: string): string {
  let out = text;
  // Known secrets first: a password with a raw '@' would otherwise be cut in two by the URL pattern.
  for (const s of knownSecrets) {
    if (out.includes(s)) out = out.split(s).join('***');
  }
  return out
    .replace(URL_USERINFO, (m: string, scheme: string, user: string, password: string) =>
      PLACEHOLDERS.has(password) ? m : `${scheme}://${user}:***@`,
    )
    .replace(PASSWORD_PARAM, (m: string, key: string, sep: string, value: string) => (PLACEHOLDERS.has(value) ? m : `${key}${sep}***`));
}

/** A connection URL as it may be shown: no password, no query string secrets. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    for (const key of [...u.searchParams.keys()]) {
      if (/pass|secret|token|key/i.test(key)) u.searchParams.set(key, '***');
    }
    return u.toString();
  } catch {
    return redactSecrets(url);
  }
}
