package broker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/busbar/busbar/auth"
)

// SubscriptionRevoker is implemented by a Client that can tell its peer a
// subscription was removed because a reload took the permission away
// (NATS: -ERR 'Permissions Violation for Subscription to ...').
type SubscriptionRevoker interface {
	Revoked(sub *Subscription)
}

// Vouch marks the session's identity as given by busbar itself (an
// in-process client of its own services): a reload leaves it alone.
func (s *Session) Vouch() {
	s.mu.Lock()
	s.vouched = true
	s.mu.Unlock()
}

// Remember records the credentials the client presented, so Reload can
// check them again against a new Authenticator. Read loop, at connect.
func (s *Session) Remember(cr *auth.Credentials) {
	s.mu.Lock()
	s.creds = cr
	s.mu.Unlock()
}

// Reload applies opts to the running broker, as nats-server's config
// reload does: the Authenticator, the limits and the accounts' exports and
// imports (replaced live). ServerName and Logger
// stay as they are. Then every connected client is checked again with
// the credentials it presented: one the new Authenticator refuses is
// closed (auth.ErrNotAuthorized: NATS clients get 'Authorization
// Violation'), one whose account changed is closed, and the others get
// their new identity and permissions; subscriptions the new permissions
// forbid are removed. In-process clients made with Local/LocalAs are the
// host's and are left alone.
//
// Limits read per operation (max_connections, max_subscriptions, the
// in-process max_payload, ping interval) apply at once; the ones a
// connection reads when it starts (max_payload and max_control_line of
// its parser, max_pending, write_deadline) apply to new connections.
func (b *Broker) Reload(opts Options) error {
	if b.closed.Load() {
		return ErrClosed
	}
	b.reloadMu.Lock()
	defer b.reloadMu.Unlock()
	cur := b.opts.Load()
	opts.Logger, opts.ServerName = cur.Logger, cur.ServerName
	opts.Store = cur.Store // the store is not reloadable: it holds the state
	opts.setDefaults()
	if err := opts.Validate(); err != nil {
		return err
	}
	b.opts.Store(&opts)
	b.installAccounts(opts.Accounts)
	for _, s := range b.sessions() {
		b.reauthorize(s)
	}
	return nil
}

// reauthorize checks s against the Authenticator now in effect: with the
// credentials it presented (Remember), or, for a session that outlives its
// connection and has none (an MQTT session restored from the Store), by
// resolving its identity (auth.Resolver). Refused: closed (an MQTT session
// ends). Moved to another account: closed. Otherwise Reidentify.
func (b *Broker) reauthorize(s *Session) {
	s.mu.Lock()
	cr, old, closed := s.creds, s.info.Identity, s.closed
	tr, ct, vouched := s.info.Transport, s.info.ConnType, s.vouched
	s.mu.Unlock()
	if closed || vouched || tr == "inprocess" || ct == auth.ConnLeafnode || ct == auth.ConnLeafnodeWS {
		return // the host's own clients; leaf links are not users of this broker
	}
	var id *auth.Identity
	if b.AuthRequired() {
		var err error
		switch {
		case cr != nil:
			id, err = b.Authenticate(context.Background(), cr)
		case old != nil:
			id, err = b.Resolve(context.Background(), old, ct)
			if errors.Is(err, auth.ErrCannotResolve) {
				return // it is checked again when its client comes back
			}
		case s.detached:
			return // a leaf node link: not a user of this broker
		default: // connected before authentication was required
			id, err = b.Authenticate(context.Background(), &auth.Credentials{Conn: ct})
		}
		if err != nil {
			s.Log().Info("reload: closing a client the new configuration does not authorize", "creds", cr, "identity", old)
			s.client.Close(fmt.Errorf("%w: %w", auth.ErrNotAuthorized, err))
			return
		}
	}
	if err := s.Reidentify(id); err != nil {
		s.Log().Info("reload: closing a client whose account changed", "identity", id)
		s.client.Close(err)
	}
}

// Resolve asks the broker's Authenticator who id is now (auth.Resolver),
// with the checks Authenticate makes (connection type, expiry): the
// current identity; auth.ErrNotAuthorized when the user is gone or
// refused; auth.ErrCannotResolve when the Authenticator cannot tell.
// Without an Authenticator, nil.
func (b *Broker) Resolve(ctx context.Context, id *auth.Identity, ct auth.ConnType) (*auth.Identity, error) {
	a := b.opts.Load().Authenticator
	if a == nil {
		return nil, nil
	}
	cur, ok, err := auth.Resolve(ctx, a, id, ct)
	switch {
	case errors.Is(err, auth.ErrCannotResolve):
		return nil, err
	case err != nil:
		b.log.Warn("resolving an identity could not decide", "identity", id, "err", err)
		return nil, fmt.Errorf("%w: %w", auth.ErrNotAuthorized, err)
	case !ok || cur == nil:
		return nil, fmt.Errorf("%w: user %q is no longer configured", auth.ErrNotAuthorized, id.Name)
	case !cur.ConnTypes.Allows(ct):
		return nil, fmt.Errorf("%w: %s", ErrConnType, ct)
	case !cur.Expires.IsZero() && time.Now().After(cur.Expires):
		return nil, ErrAuthExpired
	}
	return cur, nil
}

// Reidentify gives s the identity id (what a reload or a returning client
// says it is now): its permissions replace the old ones for every later
// publish and delivery, subscriptions they forbid are removed (the Client
// is told through SubscriptionRevoker), and allow_responses follows.
// ErrAccountChanged, and nothing changed, when id belongs to another
// account than s. Any goroutine.
func (s *Session) Reidentify(id *auth.Identity) error {
	if s.b.account(accountOf(id)) != s.acc.Load() {
		return ErrAccountChanged
	}
	s.mu.Lock()
	old := s.info.Identity
	s.mu.Unlock()
	var oldResp, newResp *auth.ResponsePermission
	if old != nil {
		oldResp = old.Perms.ResponseLimits()
	}
	if id != nil {
		newResp = id.Perms.ResponseLimits()
	}
	switch {
	case newResp == nil:
		s.resp.Store(nil)
	case oldResp == nil || *oldResp != *newResp:
		s.resp.Store(&replyPerms{max: newResp.Max, ttl: newResp.Expires})
	}
	s.mu.Lock()
	s.info.Identity = id
	s.ident.Store(id)
	subs := make([]*Subscription, 0, len(s.subs))
	for sub := range s.subs {
		subs = append(subs, sub)
	}
	s.mu.Unlock()
	var p *auth.Permissions
	if id != nil {
		p = id.Perms
	}
	for _, sub := range subs {
		if p.CanSubscribe(sub.Subject, sub.Queue) {
			if p != nil && p.NeedsDeliveryFilter(sub.Subject, sub.Queue) {
				sub.deny.Store(p)
			} else {
				sub.deny.Store(nil)
			}
			continue
		}
		s.Unsubscribe(sub)
		s.Log().Info("reload: removed a subscription the new permissions forbid", "subject", string(sub.Subject))
		if r, ok := s.client.(SubscriptionRevoker); ok {
			r.Revoked(sub)
		}
	}
	return nil
}
