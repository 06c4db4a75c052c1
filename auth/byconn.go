package auth

import "context"

// ByConnType decides with the authenticator registered for a
// connection's type, and with fallback for every other type: the
// websocket {} and mqtt {} blocks' own `authorization {}` (one user or
// token for that transport, as nats-server). A nil fallback accepts the
// other types anonymously (nothing else is configured).
func ByConnType(per map[ConnType]Authenticator, fallback Authenticator) Authenticator {
	return byConn{per: per, fallback: fallback}
}

type byConn struct {
	per      map[ConnType]Authenticator
	fallback Authenticator
}

func (b byConn) Authenticate(ctx context.Context, c *Credentials) (*Identity, bool, error) {
	if a, ok := b.per[c.Conn]; ok {
		return a.Authenticate(ctx, c)
	}
	if b.fallback == nil {
		return &Identity{}, true, nil
	}
	return b.fallback.Authenticate(ctx, c)
}

// NonceRequired reports whether the fallback needs a nonce.
func (b byConn) NonceRequired() bool { return b.fallback != nil && NonceRequired(b.fallback) }
