package auth

import (
	"context"
	"crypto/subtle"
)

// equal compares secrets in constant time.
func equal(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// UserPassword accepts one user name and password (nats-server's
// `authorization { user, password }` and `--user`/`--pass`).
func UserPassword(user, password string) Authenticator {
	return AuthenticatorFunc(func(_ context.Context, c *Credentials) (*Identity, bool, error) {
		if c.User == "" || !equal(c.User, user) || !equal(c.Password, password) {
			return nil, false, nil
		}
		return &Identity{Name: user}, true, nil
	})
}

// Token accepts one token (nats-server's `authorization { token }` and
// `--auth`).
func Token(token string) Authenticator {
	return AuthenticatorFunc(func(_ context.Context, c *Credentials) (*Identity, bool, error) {
		if c.Token == "" || !equal(c.Token, token) {
			return nil, false, nil
		}
		return &Identity{Name: "token"}, true, nil
	})
}
