package broker_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/auth"
	"github.com/busbar/busbar/broker"
)

// fakeClient records what the broker does to it.
type fakeClient struct {
	mu      sync.Mutex
	closed  error
	revoked []string
}

func (f *fakeClient) Deliver(*broker.Subscription, *broker.Message) bool { return true }
func (f *fakeClient) Wake()                                              {}
func (f *fakeClient) Close(reason error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed == nil {
		f.closed = reason
	}
}
func (f *fakeClient) Revoked(sub *broker.Subscription) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.revoked = append(f.revoked, string(sub.Subject))
}

// users is an Authenticator over name → password, with per-user perms.
func users(perms map[string]*auth.Permissions, pw map[string]string) auth.Authenticator {
	return auth.AuthenticatorFunc(func(_ context.Context, c *auth.Credentials) (*auth.Identity, bool, error) {
		if p, ok := pw[c.User]; ok && p == c.Password {
			return &auth.Identity{Name: c.User, Perms: perms[c.User]}, true, nil
		}
		return nil, false, nil
	})
}

func connectAs(t *testing.T, b *broker.Broker, user, pass string) (*fakeClient, *broker.Session) {
	t.Helper()
	c := &fakeClient{}
	s, err := b.Connect(c, nil, broker.ConnectOptions{Transport: "nats", ConnType: auth.ConnStandard})
	require.NoError(t, err)
	cr := &auth.Credentials{Conn: auth.ConnStandard, User: user, Password: pass}
	id, err := b.Authenticate(context.Background(), cr)
	require.NoError(t, err)
	require.NoError(t, s.Admit(id))
	s.Remember(cr)
	return c, s
}

func TestReloadReauthorizes(t *testing.T) {
	b := newBroker(t, broker.Options{Authenticator: users(nil, map[string]string{"a": "1", "b": "2"}), MaxSubscriptions: 5})
	ca, sa := connectAs(t, b, "a", "1")
	cb, _ := connectAs(t, b, "b", "2")
	for _, subj := range []string{"public.x", "private.x"} {
		require.NoError(t, sa.Subscribe(&broker.Subscription{Subject: []byte(subj), Client: ca}))
	}
	inproc := local(t, b) // the host's own client: left alone
	_, err := inproc.Subscribe("private.y", func(*broker.Message) {})
	require.NoError(t, err)

	perms := map[string]*auth.Permissions{"a": {
		Publish:   &auth.SubjectPermission{Allow: []string{"public.>"}},
		Subscribe: &auth.SubjectPermission{Allow: []string{"public.>"}},
	}}
	require.NoError(t, b.Reload(broker.Options{Authenticator: users(perms, map[string]string{"a": "1"}), MaxSubscriptions: 1}))

	require.True(t, errors.Is(cb.closed, auth.ErrNotAuthorized), "b was removed: %v", cb.closed)
	require.NoError(t, ca.closed)
	require.Equal(t, []string{"private.x"}, ca.revoked)
	require.Equal(t, 1, sa.NumSubscriptions())
	require.False(t, sa.CanPublish([]byte("private.x")))
	require.True(t, sa.CanPublish([]byte("public.x")))
	require.Equal(t, 1, b.Options().MaxSubscriptions)
	require.ErrorIs(t, sa.Subscribe(&broker.Subscription{Subject: []byte("public.y"), Client: ca}), broker.ErrMaxSubs)
	require.NoError(t, inproc.Publish("private.y", nil), "in-process clients keep their rights")

	// Invalid options change nothing.
	require.ErrorIs(t, b.Reload(broker.Options{MaxPayload: -1}), broker.ErrInvalidOption)
	require.Equal(t, 1, b.Options().MaxSubscriptions)
}

// TestReloadWhilePublishing: a reload swaps identities and options while
// the publisher goroutine checks permissions (go test -race).
func TestReloadWhilePublishing(t *testing.T) {
	pw := map[string]string{"a": "1"}
	b := newBroker(t, broker.Options{Authenticator: users(nil, pw)})
	ca, sa := connectAs(t, b, "a", "1")
	require.NoError(t, sa.Subscribe(&broker.Subscription{Subject: []byte("x.>"), Client: ca}))
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		var batch broker.Batch
		for {
			select {
			case <-stop:
				return
			default:
			}
			if sa.CanPublish([]byte("x.1")) {
				m := &broker.Message{Subject: []byte("x.1"), Payload: []byte("p")}
				sa.Publish(&batch, m)
				batch.Flush()
			}
			_ = b.Options().MaxPayload
		}
	}()
	for i := 0; i < 50; i++ {
		perms := map[string]*auth.Permissions{"a": {Publish: &auth.SubjectPermission{Deny: []string{"x.1"}}}}
		if i%2 == 0 {
			perms = nil
		}
		require.NoError(t, b.Reload(broker.Options{Authenticator: users(perms, pw), MaxPayload: 1024 + i}))
	}
	close(stop)
	<-done
	require.NoError(t, ca.closed)
}

// TestReloadAllowResponses: allow_responses given by a reload lets the
// subscriber answer requests delivered after it.
func TestReloadAllowResponses(t *testing.T) {
	pw := map[string]string{"a": "1", "req": "2"}
	deny := map[string]*auth.Permissions{"a": {Publish: &auth.SubjectPermission{Allow: []string{"none"}}}}
	b := newBroker(t, broker.Options{Authenticator: users(deny, pw)})
	ca, sa := connectAs(t, b, "a", "1")
	_, sreq := connectAs(t, b, "req", "2")
	require.NoError(t, sa.Subscribe(&broker.Subscription{Subject: []byte("svc"), Client: ca}))
	var batch broker.Batch
	sreq.Publish(&batch, &broker.Message{Subject: []byte("svc"), Reply: []byte("_INBOX.1"), Payload: []byte("q")})
	require.False(t, sa.CanPublish([]byte("_INBOX.1")))

	allow := map[string]*auth.Permissions{"a": {
		Publish:        &auth.SubjectPermission{Allow: []string{"none"}},
		AllowResponses: &auth.ResponsePermission{Max: 1, Expires: time.Minute},
	}}
	require.NoError(t, b.Reload(broker.Options{Authenticator: users(allow, pw)}))
	sreq.Publish(&batch, &broker.Message{Subject: []byte("svc"), Reply: []byte("_INBOX.2"), Payload: []byte("q")})
	require.True(t, sa.CanPublish([]byte("_INBOX.2")))

	require.NoError(t, b.Reload(broker.Options{Authenticator: users(deny, pw)}))
	sreq.Publish(&batch, &broker.Message{Subject: []byte("svc"), Reply: []byte("_INBOX.3"), Payload: []byte("q")})
	require.False(t, sa.CanPublish([]byte("_INBOX.3")))
}
