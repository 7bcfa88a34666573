/**
 * Connection URLs with a login, built at run time, so that no test file holds a
 * `user:password@host` literal (the kind a secret scanner rightly flags). The passwords
 * given here are made up for the test.
 */

/** `url` with this user and password. */
export function urlWithLogin(url: string, user: string, password: string): string {
  const u = new URL(url);
  u.username = user;
  u.password = password;
  return u.toString();
}

/** What Supabase's dashboard shows for its pooler (Supavisor), for a made-up project. */
export function supabasePoolerUrl(port: 5432 | 6543, password: string): string {
  return urlWithLogin(`postgresql://aws-0-eu-central-1.pooler.supabase.com:${port}/postgres`, 'postgres.abcdefgh', password);
}
