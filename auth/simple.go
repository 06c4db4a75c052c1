package auth

import "context"

// UserPassword accepts one user name and password, plain or bcrypt
// (nats-server's `authorization { user, password }` and `--user`/`--pass`).
func UserPassword(user, password string) Authenticator {
	bc := isBcrypt(password)
	return AuthenticatorFunc(func(_ context.Context, c *Credentials) (*Identity, bool, error) {
		if c.User == "" || !equal(c.User, user) || !compare(password, bc, c.Password) {
			return nil, false, nil
		}
		return &Identity{Name: user}, true, nil
	})
}

// Token accepts one token, plain or bcrypt (nats-server's
// `authorization { token }` and `--auth`). An MQTT client presents it as
// its password, with any user name or none.
func Token(token string) Authenticator {
	bc := isBcrypt(token)
	return AuthenticatorFunc(func(_ context.Context, c *Credentials) (*Identity, bool, error) {
		tok := c.token()
		if tok == "" || !compare(token, bc, tok) {
			return nil, false, nil
		}
		return &Identity{Name: "token"}, true, nil
	})
}
