package broker

import (
	"context"
	"errors"
	"fmt"

	"github.com/busbar/busbar/auth"
)

// SubscriptionRevoker is implemented by a Client that can tell its peer a
// subscription was removed because a reload took the permission away
// (NATS: -ERR 'Permissions Violation for Subscription to ...').
type SubscriptionRevoker interface {
	Revoked(sub *Subscription)
}

// ErrAccountChanged closes a client whose user moved to another account
// at a reload (nats-server closes it so it reconnects into the new one).
var ErrAccountChanged = errors.New("broker: account changed by reload")

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

// reauthorize checks s against the Authenticator now in effect.
func (b *Broker) reauthorize(s *Session) {
	s.mu.Lock()
	cr, old, closed := s.creds, s.info.Identity, s.closed
	tr, ct := s.info.Transport, s.info.ConnType
	s.mu.Unlock()
	if closed || tr == "inprocess" {
		return
	}
	var id *auth.Identity
	if b.AuthRequired() {
		if cr == nil { // connected before authentication was required
			cr = &auth.Credentials{Conn: ct}
		}
		var err error
		id, err = b.Authenticate(context.Background(), cr)
		if err != nil {
			s.Log().Info("reload: closing a client the new configuration does not authorize", "creds", cr)
			s.client.Close(fmt.Errorf("%w: %w", auth.ErrNotAuthorized, err))
			return
		}
	}
	if old != nil && id != nil && old.Account != id.Account {
		s.Log().Info("reload: closing a client whose account changed", "new_user", id.Name)
		s.client.Close(ErrAccountChanged)
		return
	}
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
}
