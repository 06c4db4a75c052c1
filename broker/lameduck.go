package broker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"time"

	"github.com/busbar/busbar/auth"
)

// LameDuckNotifier is a Client that can tell its peer the server is
// going away before it is closed (NATS: an INFO with "ldm":true, which
// nats.go hands to its LameDuckModeHandler). Optional: LameDuck finds it
// by type assertion. NotifyLameDuck runs on LameDuck's goroutine; it must
// not block (queue the notice, as Deliver does).
type LameDuckNotifier interface {
	NotifyLameDuck()
}

// LameDuckKeeper is a Service that keeps serving in lame duck mode: a
// monitoring listener, which Shutdown closes later. Every other Service
// stops accepting when lame duck mode begins.
type LameDuckKeeper interface {
	KeepInLameDuck() bool
}

// Lame duck pacing, as nats-server: the closes are spread over the
// duration minus the grace period, but never more than a second apart
// (ten clients need not wait two minutes), and at least a millisecond
// apart (a larger crowd is closed in batches).
const (
	maxLameDuckStep = time.Second
	minLameDuckStep = time.Millisecond
	// lameDuckShutdownWait bounds the Shutdown that ends LameDuck
	// (a graceful shutdown takes at most 10 s, as SIGTERM's does).
	lameDuckShutdownWait = 10 * time.Second
)

type lameDuckKey struct{}

type lameDuckState struct{ on atomic.Bool }

func (b *Broker) lameDuckState() *lameDuckState {
	return b.Extension(lameDuckKey{}, func() any { return new(lameDuckState) }).(*lameDuckState)
}

// LameDuckMode reports whether LameDuck has begun.
func (b *Broker) LameDuckMode() bool { return b.lameDuckState().on.Load() }

// LameDuck puts the broker in lame duck mode and shuts it down gently,
// as nats-server does on SIGUSR2 (`nats-server --signal ldm`):
//
//  1. every listener stops accepting (services implementing
//     LameDuckKeeper, such as monitoring, stay until Shutdown);
//  2. every client that is a LameDuckNotifier is told (NATS clients get
//     an INFO with "ldm":true and can move to another server);
//  3. after LameDuckGracePeriod, the network clients are closed one by
//     one with ErrServerShutdown (MQTT 5.0: DISCONNECT 0x8B), spread over
//     LameDuckDuration minus the grace period, at most one second apart;
//  4. Shutdown runs (OnShutdown hooks flush and close the store), bounded
//     by 10 s.
//
// In-process clients (broker.Local and natsproto.InProcess connections)
// are the host application's: they are notified when they can be, but
// only closed by the final Shutdown. A client that leaves on its own is
// skipped without a wait.
//
// LameDuck returns once the broker is shut down. Cancelling ctx ends the
// waiting: the remaining clients are closed at once, then Shutdown runs.
// A Shutdown by someone else meanwhile ends LameDuck early (nil). A second
// call returns ErrLameDuck; a call after Shutdown returns ErrClosed.
// Services started with Start during lame duck mode are not stopped
// before Shutdown.
func (b *Broker) LameDuck(ctx context.Context) error {
	if b.closed.Load() {
		return ErrClosed
	}
	if !b.lameDuckState().on.CompareAndSwap(false, true) {
		return ErrLameDuck
	}
	opts := b.Options()
	grace := max(opts.LameDuckGracePeriod, 0)
	start := time.Now()
	stopped, err := b.stopAccepting()
	if err != nil {
		b.log.Warn("lame duck: a listener did not close cleanly", "err", err)
	}
	clients, notified := b.lameDuckClients()
	b.log.Info("entering lame duck mode",
		"listeners_closed", stopped, "clients", len(clients), "notified", notified,
		"duration", opts.LameDuckDuration, "grace_period", grace)

	early := b.lameDuckWait(ctx, grace)
	closed, gone := 0, 0
	if !early {
		closed, gone = b.closeSpread(ctx, clients, opts.LameDuckDuration-grace)
	}
	if b.closed.Load() {
		b.log.Info("lame duck: ended by a shutdown", "closed", closed, "elapsed", time.Since(start).Round(time.Millisecond))
		return nil
	}
	b.log.Info("lame duck: clients closed, shutting down",
		"closed", closed, "left_on_their_own", gone, "elapsed", time.Since(start).Round(time.Millisecond))
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), lameDuckShutdownWait)
	defer cancel()
	if err := b.Shutdown(sctx); err != nil {
		if errors.Is(err, ErrClosed) {
			return nil
		}
		return fmt.Errorf("broker: lame duck: %w", err)
	}
	return nil
}

// stopAccepting closes every service but the LameDuckKeepers (their
// Close is idempotent, so Shutdown closes them again harmlessly).
func (b *Broker) stopAccepting() (int, error) {
	b.mu.Lock()
	svcs := append([]Service(nil), b.services...)
	b.mu.Unlock()
	n := 0
	var errs []error
	for _, s := range svcs {
		if k, ok := s.(LameDuckKeeper); ok && k.KeepInLameDuck() {
			continue
		}
		if err := s.Close(); err != nil {
			errs = append(errs, fmt.Errorf("%s: close: %w", s.Name(), err))
		}
		n++
	}
	return n, errors.Join(errs...)
}

// lameDuckClients notifies every client that can be told and returns the
// ones LameDuck closes: network connections, in the order they came.
func (b *Broker) lameDuckClients() ([]*Session, int) {
	all := b.sessions()
	out := make([]*Session, 0, len(all))
	notified := 0
	for _, s := range all {
		if n, ok := s.client.(LameDuckNotifier); ok {
			n.NotifyLameDuck()
			notified++
		}
		if s.detached || s.info.ConnType == auth.ConnInProcess {
			continue
		}
		out = append(out, s)
	}
	// Oldest first: ids grow with each connection.
	slices.SortFunc(out, func(x, y *Session) int { return cmp.Compare(x.info.ID, y.info.ID) })
	return out, notified
}

// lameDuckWait waits d. It reports true when the broker was shut down
// meanwhile; a cancelled ctx ends the wait early and reports false.
func (b *Broker) lameDuckWait(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return b.closed.Load()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	case <-b.ctx.Done():
		return true
	}
	return false
}

// closeSpread closes clients one batch at a time over spread. It returns
// how many it closed and how many had already left. Once ctx is done the
// rest are closed without waiting; a Shutdown meanwhile stops it.
func (b *Broker) closeSpread(ctx context.Context, clients []*Session, spread time.Duration) (closed, gone int) {
	step, batch := lameDuckPace(len(clients), spread)
	hurry := ctx.Err() != nil
	inBatch := 0
	for i, s := range clients {
		if !b.connected(s) {
			gone++
			continue
		}
		s.client.Close(ErrServerShutdown)
		closed++
		if hurry || i == len(clients)-1 {
			continue
		}
		if inBatch++; inBatch < batch {
			continue
		}
		inBatch = 0
		if b.lameDuckWait(ctx, jitter(step)) {
			return closed, gone
		}
		hurry = ctx.Err() != nil
	}
	return closed, gone
}

// lameDuckPace is the wait between closes and how many clients each wait
// covers, for n clients over spread.
func lameDuckPace(n int, spread time.Duration) (step time.Duration, batch int) {
	if n == 0 {
		return 0, 1
	}
	if spread <= 0 {
		spread = time.Second // nats-server's floor when grace ≥ duration
	}
	step = spread / time.Duration(n)
	batch = 1
	if step < minLameDuckStep {
		slots := max(int(spread/minLameDuckStep), 1)
		batch = (n + slots - 1) / slots
		step = minLameDuckStep
	}
	return min(step, maxLameDuckStep), batch
}

// jitter is a random wait in [d/2, d), so brokers lame-ducked together
// do not close their clients in lockstep.
func jitter(d time.Duration) time.Duration {
	if d < 2 {
		return d
	}
	return d/2 + rand.N(d/2)
}

// connected reports whether s is still a client of b.
func (b *Broker) connected(s *Session) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, ok := b.clients[s.info.ID]
	return ok
}
