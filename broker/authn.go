package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/busbar/busbar/auth"
)

// authenticate runs the broker's Authenticator on cr. With no
// Authenticator every connection is accepted anonymously.
func (b *Broker) authenticate(ctx context.Context, cr *auth.Credentials) (*auth.Identity, error) {
	a := b.opts.Load().Authenticator
	if a == nil {
		return nil, nil
	}
	id, ok, err := a.Authenticate(ctx, cr)
	return b.judge(cr, id, ok, err)
}

// judge turns an Authenticator's answer into the broker's: the identity,
// or why it is refused (logged here, rate-limited per remote host).
func (b *Broker) judge(cr *auth.Credentials, id *auth.Identity, ok bool, err error) (*auth.Identity, error) {
	switch {
	case errors.Is(err, auth.ErrNotAuthorized):
		b.log.Log(logUnlimitedAtDebug, slog.LevelWarn, "authentication failed", "creds", cr, "remote", remoteOf(cr), "err", err)
		return nil, auth.ErrNotAuthorized
	case err != nil:
		b.log.Log(logUnlimitedAtDebug, slog.LevelWarn, "authentication could not decide", "creds", cr, "remote", remoteOf(cr), "err", err)
		return nil, fmt.Errorf("%w: %w", auth.ErrNotAuthorized, err)
	case !ok || id == nil:
		b.log.Log(logUnlimitedAtDebug, slog.LevelWarn, "authentication failed", "creds", cr, "remote", remoteOf(cr))
		return nil, auth.ErrNotAuthorized
	case !id.ConnTypes.Allows(cr.Conn):
		return nil, fmt.Errorf("%w: %s", ErrConnType, cr.Conn)
	case !id.Expires.IsZero() && time.Now().After(id.Expires):
		return nil, ErrAuthExpired
	}
	return id, nil
}

// AuthenticateRequest asks the Authenticator about a request that comes
// before the protocol (a WebSocket upgrade): cr holds the request
// (Header, Cookies, Query, RemoteAddr, TLS) and whatever credentials
// busbar read from it; presented says whether there were any. Every such
// request is shown to the Authenticator, so a host's own one can accept
// or refuse it by what it reads itself (a header, a cookie).
//
// Accepted: the identity. Refused (an error wrapping
// auth.ErrNotAuthorized, or not accepted when presented): the error, as
// Authenticate gives it, counted and logged. Not accepted and nothing
// presented: nil, nil, and no failure, since credentials may still come
// in the protocol's CONNECT. With no Authenticator: nil, nil.
func (b *Broker) AuthenticateRequest(ctx context.Context, cr *auth.Credentials, presented bool) (*auth.Identity, error) {
	a := b.opts.Load().Authenticator
	if a == nil {
		return nil, nil
	}
	id, ok, err := a.Authenticate(ctx, cr)
	if err == nil && (!ok || id == nil) && !presented {
		return nil, nil
	}
	id, err = b.judge(cr, id, ok, err)
	if err != nil {
		b.countAuthFailure(cr, err)
	}
	return id, err
}
