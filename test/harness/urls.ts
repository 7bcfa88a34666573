/**
 * Connection URLs with a login, built at run time, so that no test file holds a
 * `user:password@host` literal (the kind a secret scanner rightly flags). The passwords
 * given here are made up for the test.
 */

/**
 * `url` with this user and password, percent-encoded as a URL must carry them (the same as
 * `encodeURIComponent`: the URL setters alone would leave a `%` in a password as it is).
 */
export function urlWithLogin(url: string, user: string, password: string): string {
  const u = new URL(url);
  u.username = encodeURIComponent(user);
  u.password = encodeURIComponent(password);
  return u.toString();
}

/**
 * `<prefix><user>:<password>@<rest>` put together exactly as given, nothing encoded or
 * checked: for what `URL` cannot build, the malformed strings a user may paste (a password
 * that is not percent-encoded, a bad host or port), e.g. `loginAsGiven('postgresql://', 'u',
 * 'p@ss', 'h/db')`.
 */
export function loginAsGiven(prefix: string, user: string, password: string, rest: string): string {
  return `${prefix}${user}:${password}@${rest}`;
}

/** What Supabase's dashboard shows for its pooler (Supavisor), for a made-up project. */
export function supabasePoolerUrl(port: 5432 | 6543, password: string, user = 'postgres.abcdefgh'): string {
  return urlWithLogin(`postgresql://aws-0-eu-central-1.pooler.supabase.com:${port}/postgres`, user, password);
}
