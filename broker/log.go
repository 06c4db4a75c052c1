package broker

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/busbar/busbar/auth"
)

// Logging. The broker wraps the host's handler once (New) so that:
//
//   - a line repeated from one source is written at most once per
//     LogRepeatInterval: the first occurrence goes out at once, the
//     following ones are counted, and the next line written for that
//     source and message carries "suppressed": N. A source is the
//     remote host of the connection (its logger's "remote" attribute, or
//     one on the record) and the message text; lines with no remote are
//     limited by message alone. Debug lines are never limited: they are
//     asked for; and when the handler is enabled at Debug (-D), neither
//     are authentication failures (logged with the unlimitedAtDebug
//     context), so a developer retrying a bad password from 127.0.0.1
//     sees every one.
//   - every connection's lines carry its id, transport, remote address and
//     user (Session.Log), so one grep follows one client.
//
// Credentials reach a log only through auth.Credentials.LogValue, which
// redacts every secret.

// LogRepeatInterval is how often one source may write one message.
const LogRepeatInterval = 10 * time.Second

// limitMaxKeys bounds the limiter's memory under a flood of sources: when
// full, keys whose window has passed are dropped, and if none has, the
// table is cleared (a repeated line may then go out once more).
const limitMaxKeys = 4096

type limitEntry struct {
	until      time.Time // end of the current window
	suppressed int
}

// limiter is shared by every handler derived from one broker's logger.
type limiter struct {
	mu    sync.Mutex
	every time.Duration
	keys  map[string]*limitEntry
}

// allow reports whether a line with key may be written at now, and how
// many lines with that key were dropped before it.
func (l *limiter) allow(key string, now time.Time) (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.keys[key]
	if e == nil {
		if len(l.keys) >= limitMaxKeys {
			l.prune(now)
		}
		l.keys[key] = &limitEntry{until: now.Add(l.every)}
		return true, 0
	}
	if now.Before(e.until) {
		e.suppressed++
		return false, 0
	}
	n := e.suppressed
	e.until, e.suppressed = now.Add(l.every), 0
	return true, n
}

func (l *limiter) prune(now time.Time) {
	for k, e := range l.keys {
		if !now.Before(e.until) && e.suppressed == 0 {
			delete(l.keys, k)
		}
	}
	if len(l.keys) >= limitMaxKeys {
		clear(l.keys)
	}
}

// unlimitedAtDebug is the context key of records the limiter lets
// through whenever the handler is enabled at Debug; logUnlimitedAtDebug
// is a context carrying it.
type unlimitedAtDebug struct{}

var logUnlimitedAtDebug = context.WithValue(context.Background(), unlimitedAtDebug{}, true)

// limitHandler is a slog.Handler that rate-limits repeated lines.
type limitHandler struct {
	next   slog.Handler
	lim    *limiter
	remote string // host of a "remote" attribute added by WithAttrs
}

func newLimitHandler(next slog.Handler, every time.Duration) *limitHandler {
	return &limitHandler{next: next, lim: &limiter{every: every, keys: make(map[string]*limitEntry)}}
}

func (h *limitHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h *limitHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level <= slog.LevelDebug || ctx.Value(unlimitedAtDebug{}) != nil && h.next.Enabled(ctx, slog.LevelDebug) {
		return h.next.Handle(ctx, r)
	}
	src := h.remote
	if src == "" {
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "remote" {
				src = remoteHost(a.Value.String())
				return false
			}
			return true
		})
	}
	now := r.Time
	if now.IsZero() {
		now = time.Now()
	}
	ok, n := h.lim.allow(src+"\x00"+r.Message, now)
	if !ok {
		return nil
	}
	if n > 0 {
		r = r.Clone()
		r.AddAttrs(slog.Int("suppressed", n))
	}
	return h.next.Handle(ctx, r)
}

func (h *limitHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	for _, a := range as {
		if a.Key == "remote" {
			c.remote = remoteHost(a.Value.String())
		}
	}
	c.next = h.next.WithAttrs(as)
	return &c
}

func (h *limitHandler) WithGroup(name string) slog.Handler {
	c := *h
	c.next = h.next.WithGroup(name)
	return &c
}

// remoteHost is addr without its port: one source per host, whatever
// port each of its connections came from.
func remoteHost(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}

// Log is the session's logger: the broker's, with the connection's id,
// transport, remote address and user on every line. Any goroutine; it
// builds the logger on each call, so keep it off per-message paths.
func (s *Session) Log() *slog.Logger {
	info := s.Snapshot()
	args := make([]any, 0, 8)
	args = append(args, "cid", info.ID, "transport", info.Transport)
	if info.Remote != "" {
		args = append(args, "remote", info.Remote)
	}
	if info.Identity != nil && info.Identity.Name != "" {
		args = append(args, "user", info.Identity.Name)
	}
	return s.b.log.With(args...)
}

// slowLog is the logger of the subscriber being cut, not the publisher's.
func slowLog(b *Broker, sub *Subscription) *slog.Logger {
	if sub.sess != nil {
		return sub.sess.Log()
	}
	return b.log
}

// remoteOf is the credentials' remote address for the limiter's source.
func remoteOf(cr *auth.Credentials) string {
	if cr == nil || cr.RemoteAddr == nil {
		return ""
	}
	return cr.RemoteAddr.String()
}
