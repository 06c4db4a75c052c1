// Package hub keeps a broker's MQTT state in the JetStream of the NATS hub
// it is a leaf node of (`mqtt { js_domain: "hub" }`), so several busbar
// instances behind a load balancer act as one MQTT broker: retained
// messages set on one are seen on all, a client id is held by one instance
// at a time (a CONNECT on another takes the session over), and a
// persistent session resumes on any instance with its subscriptions,
// will, expiry and the QoS 1/2 messages queued for it.
//
// Store is a store.Store (and store.Grouped, store.Shared) for
// broker.Options.Store, and a broker.Service to Start after the leaf node
// service: it reaches the hub through an in-process nats.go client of the
// broker, in the account the leaf link binds, so its requests cross the
// link like any client's. Until the hub answers, Ready reports
// store.ErrUnavailable and MQTT refuses new connections (CONNACK 0x88 /
// 3.1.1 0x03). State lives in two key-value buckets in the hub (created
// with Options.Replicas):
//
//	BUSBAR_MQTT           own.<k> holder and owner of session k; rel.<k> its release
//	                      s.<k> the session; o.<k>.<seq> its outbound messages
//	                      (a completed QoS 2 one: its publish log id, for a while);
//	                      i.<k>.<id> its inbound QoS 2 ids;
//	                      live.<server> when an instance last beat (publog.go)
//	BUSBAR_MQTT_RETAINED  <k> the retained message of one account and subject
//
// where <k> is the store key (broker.RetainedKey form) in unpadded
// base64url. The retained messages of the account the leaf link binds
// are in nats-server's MQTT stream $MQTT_rmsgs instead, in its record
// format, so nats-server leaves with MQTT on the same hub share them
// (natsmqtt.go). Every accepted MQTT QoS 1/2 publish is also kept for two
// minutes in the stream BUSBAR_MQTT_LOG, so that a session whose holder
// died is given what the holder had not stored (publog.go). Writes are
// asynchronous JetStream publishes; Durable runs its
// callback once the hub acknowledged every write issued before it, so an
// MQTT acknowledgement leaves only after the hub stored what it
// acknowledges.
package hub

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/busbar/busbar/auth"
	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/natsproto"
	"github.com/busbar/busbar/store"
)

// Bucket names in the hub.
const (
	StateBucket    = "BUSBAR_MQTT"
	RetainedBucket = "BUSBAR_MQTT_RETAINED"
)

// Options configure the hub state.
type Options struct {
	// Domain is the hub's JetStream domain (js_domain); "" uses the
	// JetStream of the account the link binds without a domain prefix.
	Domain string
	// Account is the local account the leaf link binds ("" the global
	// one): the in-process client runs there.
	Account string
	// Replicas of the buckets busbar creates; 0: nats-server's rule, up to
	// 3 and not more than the cluster has.
	Replicas int
	// ReleaseWait bounds how long a claim waits for the previous holder to
	// let go of a session (it may be gone); default 1s.
	ReleaseWait time.Duration
	// Timeout bounds one hub request; default 5s.
	Timeout time.Duration
	Logger  *slog.Logger
}

// maxPendingWrites is nats.go's bound on unacknowledged asynchronous
// publishes, set past anything the MQTT limits let pile up (a session
// queues at most 100,000 messages by default), so a write never stalls.
const maxPendingWrites = 1 << 24

// Store is MQTT state in the hub's JetStream.
type Store struct {
	opts Options
	log  *slog.Logger
	b    *broker.Broker

	mu       sync.Mutex
	nc       *nats.Conn
	js       jetstream.JetStream
	kv, ret  jetstream.KeyValue
	ready    error
	closed   bool
	cancel   context.CancelFunc
	ttl      map[string]bool   // buckets whose deletion markers expire (markerTTL)
	held     map[string]uint64 // session keys this broker holds: revision of its own.<k> record
	retRev   map[string]uint64 // revision of each retained message applied (by encoded key)
	retSeen  uint64            // every retained bucket sequence up to it was applied here
	retAhead map[uint64]bool   // sequences applied beyond retSeen (notices out of order)
	// $MQTT_rmsgs (natsmqtt.go): the stream sequence of the record applied
	// per subject, this instance's origin, whether markers may expire.
	rmRev    map[string]uint64
	rmOrigin string
	rmTTL    bool
	// What this broker wrote or loaded of the sessions it holds: the last
	// full session record, the subscriptions put one by one, the outbound
	// messages (Release rewrites one, DeleteSession removes them).
	sess     map[string]*store.Session
	subs     map[string]map[string]bool
	out      map[string]map[uint64]*store.Inflight
	futs     []*write // writes since the last Durable
	takeover []func(string)
	adopt    []func(string, *store.SessionState)
	peers    map[string]time.Time // other instances' last heartbeat
	retained []func(string, *store.Message)
	// Durable callbacks, in order, served by one goroutine.
	dq     []durable
	dqCond *sync.Cond
	stats  Stats
}

type durable struct {
	futs []*write
	fn   func(error)
}

// write is one asynchronous write and, once serveDurable saw it, its
// outcome (a future's channels give their value once).
type write struct {
	f    jetstream.PubAckFuture
	done bool
	ack  *jetstream.PubAck
	err  error
}

// Stats are the hub state's figures for monitoring.
type Stats struct {
	Domain     string        `json:"domain"`
	Ready      bool          `json:"ready"`
	LastError  string        `json:"last_error,omitempty"`
	Writes     int64         `json:"writes"`
	WriteFails int64         `json:"write_errors"`
	Claims     int64         `json:"claims"`
	Takeovers  int64         `json:"takeovers"`
	Adopted    int64         `json:"adopted"` // sessions taken from an instance that is gone
	Peers      int           `json:"peers"`   // other instances heard from lately
	RTT        time.Duration `json:"rtt"`     // last hub round trip
}

var (
	_ store.Store    = (*Store)(nil)
	_ store.Grouped  = (*Store)(nil)
	_ store.Shared   = (*Store)(nil)
	_ broker.Service = (*Store)(nil)
)

// New makes the hub state; it connects when the broker starts it.
func New(o Options) *Store {
	if o.ReleaseWait <= 0 {
		o.ReleaseWait = time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	s := &Store{opts: o, log: o.Logger, held: map[string]uint64{}, out: map[string]map[uint64]*store.Inflight{},
		sess: map[string]*store.Session{}, subs: map[string]map[string]bool{}, retRev: map[string]uint64{},
		ready: fmt.Errorf("%w: not connected to the hub yet", store.ErrUnavailable)}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.dqCond = sync.NewCond(&s.mu)
	go s.serveDurable()
	return s
}

// Name is "hub".
func (s *Store) Name() string { return "hub" }

// KeepInLameDuck: the state stays reachable until Shutdown.
func (s *Store) KeepInLameDuck() bool { return true }

// Serve connects to the hub through the broker and keeps the state
// followed until Close or the broker's end.
func (s *Store) Serve(ctx context.Context, b *broker.Broker) error {
	s.mu.Lock()
	s.b = b
	if s.opts.Logger == nil {
		s.log = b.Logger()
	}
	ctx, s.cancel = context.WithCancel(ctx)
	s.mu.Unlock()
	id := &auth.Identity{Name: "$busbar-hub-state", Account: s.opts.Account}
	// Replies (JetStream acknowledgements, API answers, consumer
	// deliveries) come to an inbox under "$BUSBAR.": an MQTT "#" or "+"
	// at the start of a filter never matches a topic starting with '$'
	// [MQTT-4.7.2-1], so MQTT subscribers of the link's account never see
	// this traffic (nats-server's MQTT replies under "$MQTT." for the same
	// reason). Under "_INBOX." a session subscribed to "#" got them, and
	// its stored copies caused more.
	nc, err := nats.Connect("", nats.InProcessServer(natsproto.InProcessAs(b, id)), nats.Name("busbar hub state"),
		nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond), nats.CustomInboxPrefix(hubInbox))
	if err != nil {
		return fmt.Errorf("hub: connect in-process: %w", err)
	}
	defer nc.Close()
	// A write never waits for acknowledgements (nats.go stalls a publish
	// while 4,000 are outstanding by default): the acknowledgements come
	// back through the same leaf link whose read loop delivers the messages
	// that cause the writes, so a write that waited there would hold them
	// up (a QoS 1 stream faster than the hub stalled for good). What is
	// outstanding is bounded by the sessions' queue limits instead.
	jsOpts := []jetstream.JetStreamOpt{jetstream.WithPublishAsyncMaxPending(maxPendingWrites)}
	var js jetstream.JetStream
	if s.opts.Domain != "" {
		js, err = jetstream.NewWithDomain(nc, s.opts.Domain, jsOpts...)
	} else {
		js, err = jetstream.New(nc, jsOpts...)
	}
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	s.mu.Lock()
	s.nc, s.js = nc, js
	s.mu.Unlock()
	for ctx.Err() == nil {
		err := s.session(ctx)
		s.setReady(fmt.Errorf("%w: %w", store.ErrUnavailable, err))
		if ctx.Err() != nil {
			break
		}
		s.log.Warn("hub: MQTT state unavailable, retrying", "domain", s.opts.Domain, "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
	return nil
}

// session binds the buckets, loads the retained messages and serves the
// other brokers' notices until an error. Changes travel as core NATS
// messages across the link (a notice per retained change, a request per
// takeover), which reach every instance as soon as the hub has them.
func (s *Store) session(ctx context.Context) error {
	kv, err := s.bucket(ctx, StateBucket)
	if err != nil {
		return err
	}
	ret, err := s.bucket(ctx, RetainedBucket)
	if err != nil {
		return err
	}
	if err := s.logStream(ctx); err != nil {
		return err
	}
	ttl := map[string]bool{StateBucket: s.allowTTL(ctx, StateBucket), RetainedBucket: s.allowTTL(ctx, RetainedBucket)}
	s.mu.Lock()
	s.kv, s.ret, s.ttl = kv, ret, ttl
	s.mu.Unlock()
	notices, err := s.nc.Subscribe(retainedNotice, s.onRetainedNotice)
	if err != nil {
		return err
	}
	defer func() { _ = notices.Unsubscribe() }()
	takeovers, err := s.nc.Subscribe(takeoverSubject(s.server()), s.onTakeoverRequest)
	if err != nil {
		return err
	}
	defer func() { _ = takeovers.Unsubscribe() }()
	alive, err := s.nc.Subscribe(aliveSubject("*"), s.onAlive)
	if err != nil {
		return err
	}
	defer func() { _ = alive.Unsubscribe() }()
	pings, err := s.nc.Subscribe(pingSubject(s.server()), func(m *nats.Msg) { _ = m.Respond(nil) })
	if err != nil {
		return err
	}
	defer func() { _ = pings.Unsubscribe() }()
	if err := s.nc.FlushTimeout(s.opts.Timeout); err != nil {
		return err
	}
	stopRmsgs, err := s.followRmsgs(ctx)
	if err != nil {
		return err
	}
	defer stopRmsgs()
	last, err := s.retainedLast(ctx)
	if err != nil {
		return fmt.Errorf("hub: retained bucket: %w", err)
	}
	if err := s.loadRetained(ctx, last); err != nil {
		return err
	}
	s.setReady(nil)
	s.log.Info("hub: MQTT state in the hub's JetStream", "domain", s.opts.Domain)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			_ = s.nc.Publish(aliveSubject(s.server()), nil)
			s.writeLive()
			if err := s.ping(ctx); err != nil {
				return err
			}
			for peer, at := range s.silentPeers() {
				go s.adoptFrom(ctx, peer, at)
			}
		}
	}
}

// Subjects of the notices instances exchange (in the link's account).
const retainedNotice = "$BUSBAR.mqtt.retained"

// hubInbox prefixes the replies to the hub state's requests and writes.
const hubInbox = "$BUSBAR.hub.inbox"

func aliveSubject(server string) string { return "$BUSBAR.mqtt.alive." + server }

// pingSubject answers whether an instance is there (only it listens).
func pingSubject(server string) string { return "$BUSBAR.mqtt.ping." + server }

// A peer silent this long is taken for gone: its sessions are adopted.
const peerSilence = 3 * time.Second

// onAlive records another instance's heartbeat (one a second).
func (s *Store) onAlive(m *nats.Msg) {
	peer := m.Subject[len(aliveSubject("")):]
	if peer == s.server() {
		return
	}
	s.mu.Lock()
	if s.peers == nil {
		s.peers = map[string]time.Time{}
	}
	s.peers[peer] = time.Now()
	s.mu.Unlock()
}

// silentPeers are the instances heard from before and silent for
// peerSilence now, with when they were last heard; each is reported once.
func (s *Store) silentPeers() map[string]time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	var gone map[string]time.Time
	for p, at := range s.peers {
		if time.Since(at) > peerSilence {
			if gone == nil {
				gone = map[string]time.Time{}
			}
			gone[p] = at
			delete(s.peers, p)
		}
	}
	return gone
}

// lastHeard is when peer was last heard from, or, not heard lately, the
// longest it can have been silent without being taken for gone.
func (s *Store) lastHeard(ctx context.Context, peer string) time.Time {
	s.mu.Lock()
	at, ok := s.peers[peer]
	kv := s.kv
	s.mu.Unlock()
	if ok {
		return at
	}
	// Not heard by this instance (it started after, or missed it): the
	// time the peer last wrote in the hub, or, with none left (it expires
	// with the log), as long ago as the log reaches.
	if e, err := kv.Get(ctx, liveKey(peer)); err == nil {
		if ns, err := strconv.ParseInt(string(e.Value()), 10, 64); err == nil {
			return time.Unix(0, ns)
		}
	}
	return time.Now().Add(-logMaxAge)
}

// liveKey is the state bucket's record of when an instance was last alive.
func liveKey(server string) string { return "live." + server }

// writeLive records in the hub that this instance is alive now (each
// heartbeat), for instances that did not hear it (lastHeard). Not waited
// for; with message TTLs the record goes logMaxAge after the last one.
func (s *Store) writeLive() {
	s.mu.Lock()
	js, ttl := s.js, s.ttl[StateBucket]
	s.mu.Unlock()
	m := &nats.Msg{Subject: s.kvSubject(StateBucket, liveKey(s.server())), Data: strconv.AppendInt(nil, time.Now().UnixNano(), 10), Header: nats.Header{}}
	if ttl {
		m.Header.Set(jetstream.MsgTTLHeader, logMaxAge.String())
	}
	_, _ = js.PublishMsgAsync(m)
}

// adoptFrom takes over the sessions an instance that is gone held, so
// that what is published for them while their clients are away is kept:
// every instance tries, compare-and-set on the owner record picks one.
// Sessions with no stored state (clean sessions) just lose their owner
// record.
func (s *Store) adoptFrom(ctx context.Context, peer string, heard time.Time) {
	ctx, cancel := context.WithTimeout(ctx, 10*s.opts.Timeout)
	defer cancel()
	// Silent is not gone: one that answers (a late heartbeat on a loaded
	// machine) keeps its sessions. No responders means no such instance.
	if _, err := s.nc.Request(pingSubject(peer), nil, s.opts.Timeout); err == nil || !errors.Is(err, nats.ErrNoResponders) {
		if err == nil {
			s.onAlive(&nats.Msg{Subject: aliveSubject(peer)})
		}
		return
	}
	s.mu.Lock()
	kv := s.kv
	fns := s.adopt
	s.mu.Unlock()
	keys, err := kv.ListKeysFiltered(ctx, "own.>")
	if err != nil {
		return
	}
	var names []string
	for k := range keys.Keys() {
		names = append(names, k)
	}
	if ctx.Err() != nil {
		return // incomplete: the next silent peer check tries again
	}
	for _, name := range names {
		e, err := kv.Get(ctx, name)
		if err != nil {
			continue
		}
		var o owner
		if json.Unmarshal(e.Value(), &o) != nil || o.Server != peer {
			continue
		}
		key, ok := dec(strings.TrimPrefix(name, "own."))
		if !ok {
			continue
		}
		next := owner{Server: s.server(), Owner: o.Owner, Epoch: o.Epoch + 1}
		v, _ := json.Marshal(next)
		rev, err := kv.Update(ctx, name, v, e.Revision())
		if err != nil {
			continue // another instance adopted it, or its client came back
		}
		st, err := s.load(ctx, enc(key))
		if st != nil {
			st.Gone = heard
		}
		if err != nil || st == nil {
			// Nothing stored (a clean session): no owner either.
			_ = s.deleteKey(ctx, kv, StateBucket, name, rev)
			continue
		}
		s.mu.Lock()
		s.held[key] = rev
		s.stats.Adopted++
		s.mu.Unlock()
		s.log.Info("hub: adopted a session of an instance that is gone", "key", redactKey(key), "from", peer)
		for _, fn := range fns {
			fn(key, st)
		}
	}
}

// OnAdopt registers fn for sessions adopted from an instance that is gone.
func (s *Store) OnAdopt(fn func(key string, st *store.SessionState)) {
	s.mu.Lock()
	s.adopt = append(s.adopt, fn)
	s.mu.Unlock()
}

func takeoverSubject(server string) string { return "$BUSBAR.mqtt.takeover." + server }

// loadRetained reads every retained message of the bucket, as of its
// last sequence last: values newer than what was applied replace it, and
// keys applied here that the bucket no longer holds are deleted. It runs
// at start and whenever the bucket moved past what this broker heard of (a
// notice lost while the link was down).
func (s *Store) loadRetained(ctx context.Context, last uint64) error {
	ctx, cancel := context.WithTimeout(ctx, 3*s.opts.Timeout)
	defer cancel()
	live := map[string]bool{}
	keys, err := s.ret.ListKeys(ctx)
	switch {
	case errors.Is(err, jetstream.ErrNoKeysFound):
	case err != nil:
		return fmt.Errorf("hub: retained keys: %w", err)
	default:
		for k := range keys.Keys() {
			live[k] = true
		}
		if ctx.Err() != nil { // the lister stops at the deadline without saying so: incomplete
			return fmt.Errorf("hub: retained keys: %w", ctx.Err())
		}
	}
	for k := range live {
		if key, ok := dec(k); !ok || s.rmsgsSubject(key) != "" {
			delete(live, k) // the link account's are in $MQTT_rmsgs (natsmqtt.go)
			continue
		}
		e, err := s.ret.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			delete(live, k)
			continue
		}
		if err != nil {
			return fmt.Errorf("hub: retained %s: %w", k, err)
		}
		s.applyRetained(k, e.Revision(), e.Value())
	}
	s.mu.Lock()
	var gone []string
	for k := range s.retRev {
		if !live[k] {
			gone = append(gone, k)
		}
	}
	s.mu.Unlock()
	for _, k := range gone {
		s.applyRetained(k, last, nil)
	}
	s.mu.Lock()
	if last > s.retSeen {
		s.retSeen = last
		for r := range s.retAhead {
			if r <= last {
				delete(s.retAhead, r)
			}
		}
	}
	s.mu.Unlock()
	return nil
}

// retainedLast is the retained bucket's last sequence: every change,
// deletions included, moves it.
func (s *Store) retainedLast(ctx context.Context) (uint64, error) {
	st, err := s.ret.Status(ctx)
	if err != nil {
		return 0, err
	}
	if ks, ok := st.(*jetstream.KeyValueBucketStatus); ok {
		return ks.StreamInfo().State.LastSeq, nil
	}
	return 0, nil
}

// ping measures a hub round trip (the retained bucket's status) and
// reloads the retained messages when the bucket moved past what was heard.
func (s *Store) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	t := time.Now()
	last, err := s.retainedLast(ctx)
	if err != nil {
		return fmt.Errorf("hub: JetStream: %w", err)
	}
	s.mu.Lock()
	s.stats.RTT = time.Since(t)
	seen := s.retSeen
	s.mu.Unlock()
	if last > seen {
		return s.loadRetained(ctx, last)
	}
	return nil
}

// replicaCounts are the replica counts to try, in order, for a bucket or
// stream busbar creates: stream_replicas, or nats-server's rule for its
// MQTT streams (up to 3, not more than the cluster has: a larger count is
// refused, so fewer are tried).
func (s *Store) replicaCounts() []int {
	if s.opts.Replicas > 0 {
		return []int{s.opts.Replicas}
	}
	return []int{3, 2, 1}
}

func (s *Store) bucket(ctx context.Context, name string) (jetstream.KeyValue, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	kv, err := s.js.KeyValue(ctx, name)
	if err == nil {
		return kv, nil
	}
	for _, r := range s.replicaCounts() {
		cfg := jetstream.KeyValueConfig{Bucket: name, History: 1, Storage: jetstream.FileStorage, Replicas: r}
		kv, err = s.js.CreateKeyValue(ctx, cfg)
		if errors.Is(err, jetstream.ErrBucketExists) {
			return s.js.KeyValue(ctx, name)
		}
		if err == nil {
			s.log.Info("hub: created bucket", "bucket", name, "replicas", r)
			return kv, nil
		}
	}
	return nil, fmt.Errorf("hub: bucket %s: %w", name, err)
}

// markerTTL is how long a deletion's marker stays in a bucket whose
// stream allows message TTLs (nats-server 2.11+). Without it every key
// ever deleted keeps a marker: one per QoS 1/2 message a persistent
// session was sent (o.<k>.<seq>), one per client id that connected. A
// marker only has to replace the value; nothing here watches the state
// bucket, and a retained key without a value or a marker is as deleted.
const markerTTL = time.Second

// allowTTL turns on message TTLs in the stream of bucket (buckets made
// before this version have them off) and reports whether the hub took it.
func (s *Store) allowTTL(ctx context.Context, bucket string) bool {
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	st, err := s.js.Stream(ctx, "KV_"+bucket)
	if err != nil {
		return false
	}
	cfg := st.CachedInfo().Config
	if cfg.AllowMsgTTL {
		return true
	}
	cfg.AllowMsgTTL = true
	info, err := s.js.UpdateStream(ctx, cfg)
	if err != nil || !info.CachedInfo().Config.AllowMsgTTL {
		s.log.Info("hub: the hub keeps deletion markers (no message TTLs before nats-server 2.11)", "bucket", bucket, "err", err)
		return false
	}
	return true
}

// deleteKey removes key from bucket if its revision is still rev.
func (s *Store) deleteKey(ctx context.Context, kv jetstream.KeyValue, bucket, key string, rev uint64) error {
	s.mu.Lock()
	ttl := s.ttl[bucket]
	s.mu.Unlock()
	if ttl {
		return kv.Purge(ctx, key, jetstream.LastRevision(rev), jetstream.PurgeTTL(markerTTL))
	}
	return kv.Delete(ctx, key, jetstream.LastRevision(rev))
}

func (s *Store) apiPrefix() string {
	if s.opts.Domain != "" {
		return "$JS." + s.opts.Domain + ".API."
	}
	return "$JS.API."
}

func (s *Store) setReady(err error) {
	s.mu.Lock()
	s.ready = err
	s.stats.Ready = err == nil
	if err != nil {
		s.stats.LastError = err.Error()
	}
	s.mu.Unlock()
}

// Ready is nil once the buckets are bound and the retained messages loaded.
func (s *Store) Ready() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ready
}

// Healthy is Ready (broker.HealthChecker: /healthz).
func (s *Store) Healthy() error { return s.Ready() }

// Stats snapshots the figures.
func (s *Store) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Domain = s.opts.Domain
	st.Peers = len(s.peers)
	return st
}

// Close stops following the hub (Shutdown).
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.cancel != nil {
		s.cancel()
	}
	s.dqCond.Broadcast()
	return nil
}

// enc is a store key as a KV key token.
func enc(key string) string { return base64.RawURLEncoding.EncodeToString([]byte(key)) }

func dec(tok string) (string, bool) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	return string(b), err == nil
}

// put writes key=value (nil value: delete) to bucket asynchronously;
// Durable waits for it.
func (s *Store) put(bucket, key string, value []byte, del bool) error {
	_, err := s.putF(bucket, key, value, del)
	return err
}

func (s *Store) putF(bucket, key string, value []byte, del bool) (*write, error) {
	m := &nats.Msg{Subject: s.kvSubject(bucket, key), Data: value, Header: nats.Header{}}
	s.mu.Lock()
	ttl := s.ttl[bucket]
	s.mu.Unlock()
	if del && ttl {
		// The value goes at once, its marker after markerTTL.
		m.Header.Set("KV-Operation", "PURGE")
		m.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
		m.Header.Set(jetstream.MsgTTLHeader, markerTTL.String())
	} else if del {
		m.Header.Set("KV-Operation", "DEL")
	}
	return s.publish(m)
}

// publish writes m to the hub's JetStream asynchronously; Durable waits
// for it.
func (s *Store) publish(m *nats.Msg) (*write, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ready != nil && s.js == nil {
		return nil, s.ready
	}
	if s.closed {
		return nil, store.ErrClosed
	}
	f, err := s.js.PublishMsgAsync(m)
	if err != nil {
		s.stats.WriteFails++
		return nil, fmt.Errorf("hub: %w", err)
	}
	s.stats.Writes++
	w := &write{f: f}
	s.futs = append(s.futs, w)
	return w, nil
}

// Durable runs fn once the hub acknowledged every write issued before.
func (s *Store) Durable(fn func(err error)) {
	s.mu.Lock()
	s.dq = append(s.dq, durable{futs: s.futs, fn: fn})
	s.futs = nil
	s.dqCond.Signal()
	s.mu.Unlock()
}

func (s *Store) serveDurable() {
	// A write that failed fails every callback queued when that was seen,
	// not only the one whose batch held it: a batch is the writes since
	// the previous Durable of any caller (SetRetained's own, another
	// connection's), so the callback that owes its acknowledgement to a
	// write may come after the batch that held it.
	var failed error
	failN := 0
	for {
		s.mu.Lock()
		for len(s.dq) == 0 && !s.closed {
			s.dqCond.Wait()
		}
		if len(s.dq) == 0 {
			s.mu.Unlock()
			return
		}
		d := s.dq[0]
		s.dq = s.dq[1:]
		timeout := s.opts.Timeout
		s.mu.Unlock()
		err := waitWrites(d.futs, timeout)
		switch {
		case err != nil:
			s.mu.Lock()
			failed, failN = err, len(s.dq)
			s.stats.WriteFails++
			s.stats.LastError = err.Error()
			s.mu.Unlock()
			s.log.Warn("hub: a write was not stored", "err", err)
		case failN > 0:
			err = failed
			failN--
		}
		d.fn(err)
	}
}

// waitWrites waits for each write's acknowledgement (at most timeout
// each) and keeps it in the write; the first error.
func waitWrites(ws []*write, timeout time.Duration) error {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for _, w := range ws {
		if !w.done {
			if timer == nil {
				timer = time.NewTimer(timeout)
			} else {
				timer.Reset(timeout)
			}
			select {
			case w.ack = <-w.f.Ok():
			case e := <-w.f.Err():
				w.err = fmt.Errorf("hub: %w", e)
			case <-timer.C:
				w.err = fmt.Errorf("%w: no acknowledgement from the hub within %v", store.ErrUnavailable, timeout)
			}
			w.done = true
		}
		if w.err != nil {
			return w.err
		}
	}
	return nil
}

// Sync waits until every write issued so far is durable.
func (s *Store) Sync(ctx context.Context) error {
	done := make(chan error, 1)
	s.Durable(func(err error) { done <- err })
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Begin and End: every write of a read is acknowledged before its
// Durable callback anyway.
func (s *Store) Begin() {}
func (s *Store) End()   {}

// --- store.Store ---

// SaveSession writes the session record; with KeepSubs its subscriptions
// stay as stored (the last full record's and the ones put one by one).
func (s *Store) SaveSession(_ context.Context, rec *store.Session) error {
	c := *rec
	s.mu.Lock()
	last := s.sess[rec.ClientID]
	if c.KeepSubs {
		if last != nil {
			c.Subs = last.Subs
		} else {
			c.Subs = nil
		}
	}
	var gone map[string]bool // subscriptions put one by one, replaced by Subs
	if !rec.KeepSubs {
		gone = s.subs[rec.ClientID]
		delete(s.subs, rec.ClientID)
	}
	c.KeepSubs = false
	s.sess[rec.ClientID] = &c
	s.mu.Unlock()
	for f := range gone {
		if err := s.put(StateBucket, "u."+enc(rec.ClientID)+"."+enc(f), nil, true); err != nil {
			return err
		}
	}
	v, err := json.Marshal(&c)
	if err != nil {
		return err
	}
	return s.put(StateBucket, "s."+enc(rec.ClientID), v, false)
}

// PutSubscription writes one subscription of a session as its own record.
func (s *Store) PutSubscription(_ context.Context, key string, sub *store.Subscription) error {
	v, err := json.Marshal(sub)
	if err != nil {
		return err
	}
	s.mu.Lock()
	if s.subs[key] == nil {
		s.subs[key] = map[string]bool{}
	}
	s.subs[key][sub.Filter] = true
	s.mu.Unlock()
	return s.put(StateBucket, "u."+enc(key)+"."+enc(sub.Filter), v, false)
}

// DeleteSubscription removes one subscription of a session.
func (s *Store) DeleteSubscription(ctx context.Context, key, filter string) error {
	s.mu.Lock()
	delete(s.subs[key], filter)
	var rewrite *store.Session
	if last := s.sess[key]; last != nil {
		for i, sub := range last.Subs {
			if sub.Filter == filter {
				c := *last
				c.Subs = append(append([]store.Subscription(nil), last.Subs[:i]...), last.Subs[i+1:]...)
				rewrite = &c
				break
			}
		}
	}
	s.mu.Unlock()
	if rewrite != nil {
		if err := s.SaveSession(ctx, rewrite); err != nil {
			return err
		}
	}
	return s.put(StateBucket, "u."+enc(key)+"."+enc(filter), nil, true)
}

// DeleteSession removes the session's records (not its ownership: Release).
func (s *Store) DeleteSession(_ context.Context, key string) error {
	k := enc(key)
	s.mu.Lock()
	outs := s.out[key]
	subs := s.subs[key]
	delete(s.out, key)
	delete(s.subs, key)
	delete(s.sess, key)
	s.mu.Unlock()
	for f := range subs {
		if err := s.put(StateBucket, "u."+k+"."+enc(f), nil, true); err != nil {
			return err
		}
	}
	for seq := range outs {
		if err := s.put(StateBucket, "o."+k+"."+strconv.FormatUint(seq, 10), nil, true); err != nil {
			return err
		}
	}
	return s.put(StateBucket, "s."+k, nil, true)
}

// PutInflight adds or replaces an outbound message.
func (s *Store) PutInflight(_ context.Context, key string, f *store.Inflight) error {
	v, err := json.Marshal(f)
	if err != nil {
		return err
	}
	s.mu.Lock()
	m := s.out[key]
	if m == nil {
		m = map[uint64]*store.Inflight{}
		s.out[key] = m
	}
	m[f.Seq] = f
	s.mu.Unlock()
	return s.put(StateBucket, "o."+enc(key)+"."+strconv.FormatUint(f.Seq, 10), v, false)
}

// Release marks an outbound QoS 2 message as past PUBREC.
func (s *Store) Release(ctx context.Context, key string, seq uint64) error {
	s.mu.Lock()
	f := s.out[key][seq]
	s.mu.Unlock()
	if f == nil {
		return nil
	}
	c := *f
	c.Released = true
	return s.PutInflight(ctx, key, &c)
}

// AckInflight removes an outbound message. A QoS 2 one with a publish
// log id leaves a record of its id for as long as the log keeps entries
// (where the bucket allows message TTLs), so a replay after this
// instance's death does not deliver it a second time (doneRecord).
func (s *Store) AckInflight(_ context.Context, key string, seq uint64) error {
	s.mu.Lock()
	f := s.out[key][seq]
	delete(s.out[key], seq)
	ttl := s.ttl[StateBucket]
	s.mu.Unlock()
	name := "o." + enc(key) + "." + strconv.FormatUint(seq, 10)
	if f != nil && f.Msg.QoS == 2 && f.Msg.ID != "" && ttl {
		v, _ := json.Marshal(doneRecord{Done: f.Msg.ID})
		m := &nats.Msg{Subject: s.kvSubject(StateBucket, name), Data: v, Header: nats.Header{}}
		m.Header.Set(jetstream.MsgTTLHeader, logMaxAge.String())
		_, err := s.publish(m)
		return err
	}
	return s.put(StateBucket, name, nil, true)
}

// doneRecord replaces a completed QoS 2 message's record (AckInflight).
type doneRecord struct {
	Done string // its publish log id
}

// kvSubject is the subject a put to key of bucket is published on:
// across a domain, behind the domain's API prefix (the hub maps it to the
// bucket's stream).
func (s *Store) kvSubject(bucket, key string) string {
	subj := "$KV." + bucket + "." + key
	if s.opts.Domain != "" {
		subj = s.apiPrefix() + subj
	}
	return subj
}

// PutInbound records a QoS 2 id awaiting PUBREL.
func (s *Store) PutInbound(_ context.Context, key string, id uint16) error {
	return s.put(StateBucket, "i."+enc(key)+"."+strconv.Itoa(int(id)), []byte{1}, false)
}

// DeleteInbound forgets a QoS 2 id.
func (s *Store) DeleteInbound(_ context.Context, key string, id uint16) error {
	return s.put(StateBucket, "i."+enc(key)+"."+strconv.Itoa(int(id)), nil, true)
}

// SetRetained stores (or deletes) the retained message under key; once
// the hub stored it, every other broker is told.
func (s *Store) SetRetained(_ context.Context, key string, m *store.Message) error {
	if subj := s.rmsgsSubject(key); subj != "" {
		return s.setRmsg(subj, m)
	}
	var v []byte
	if m != nil && len(m.Payload) > 0 {
		v = encodeRetained(m)
	}
	k := enc(key)
	w, err := s.putF(RetainedBucket, k, v, v == nil)
	if err != nil {
		return err
	}
	s.Durable(func(err error) {
		if err != nil || w.ack == nil {
			return
		}
		rev := w.ack.Sequence // serveDurable kept it: this runs after
		s.mu.Lock()
		if rev > s.retRev[k] {
			s.retRev[k] = rev
		}
		s.heardLocked(rev)
		nc := s.nc
		s.mu.Unlock()
		n := &nats.Msg{Subject: retainedNotice, Data: v, Header: nats.Header{}}
		n.Header.Set("Busbar-Key", k)
		n.Header.Set("Busbar-Rev", strconv.FormatUint(rev, 10))
		_ = nc.PublishMsg(n)
	})
	return nil
}

// Load replays nothing: retained messages arrive through OnRetained once
// the hub is reached, sessions through Claim when their clients connect.
func (s *Store) Load(context.Context, func(store.Record) error) error { return nil }

// --- retained follow ---

// OnRetained registers fn for the retained messages the hub holds.
func (s *Store) OnRetained(fn func(key string, m *store.Message)) {
	s.mu.Lock()
	s.retained = append(s.retained, fn)
	s.mu.Unlock()
}

// applyRetained hands one retained message (value: QoS byte and
// payload; empty: deleted) at revision rev to the broker, unless a newer
// one was applied already.
func (s *Store) applyRetained(k string, rev uint64, v []byte) {
	key, ok := dec(k)
	if !ok || s.rmsgsSubject(key) != "" {
		return
	}
	s.mu.Lock()
	if rev != 0 && s.retRev[k] >= rev {
		s.mu.Unlock()
		return
	}
	s.retRev[k] = rev
	s.heardLocked(rev)
	fns := s.retained
	s.mu.Unlock()
	var m *store.Message
	if len(v) > 1 {
		_, subj := broker.SplitStoreKey(key)
		if m = decodeRetained(v); m != nil {
			m.Subject = []byte(subj)
		}
	}
	for _, fn := range fns {
		fn(key, m)
	}
}

// A retained value: one byte, the QoS in the low bits and retainedExt when
// MQTT 5.0 properties or an expiry follow (uvarint length and the
// properties, varint expiry in Unix nanoseconds), then the payload.
const retainedExt = 0x80

func encodeRetained(m *store.Message) []byte {
	v := make([]byte, 0, 1+len(m.Payload)+len(m.Props)+12)
	if len(m.Props) == 0 && m.Expires == 0 {
		v = append(v, m.QoS&3)
	} else {
		v = append(v, m.QoS&3|retainedExt)
		v = binary.AppendUvarint(v, uint64(len(m.Props)))
		v = append(v, m.Props...)
		v = binary.AppendVarint(v, m.Expires)
	}
	return append(v, m.Payload...)
}

func decodeRetained(v []byte) *store.Message {
	m := &store.Message{QoS: v[0] & 3, Retain: true}
	rest := v[1:]
	if v[0]&retainedExt != 0 {
		n, k := binary.Uvarint(rest)
		if k <= 0 || n > uint64(len(rest)-k) {
			return nil
		}
		m.Props = append([]byte(nil), rest[k:k+int(n)]...)
		rest = rest[k+int(n):]
		e, k2 := binary.Varint(rest)
		if k2 <= 0 {
			return nil
		}
		m.Expires, rest = e, rest[k2:]
	}
	m.Payload = append([]byte(nil), rest...)
	return m
}

// heardLocked notes that the change at bucket sequence rev was applied:
// retSeen advances over every sequence heard without a gap, so a ping
// reloads the bucket only when a notice was missed. s.mu held.
func (s *Store) heardLocked(rev uint64) {
	if rev <= s.retSeen {
		return
	}
	if s.retAhead == nil {
		s.retAhead = map[uint64]bool{}
	}
	s.retAhead[rev] = true
	for s.retAhead[s.retSeen+1] {
		delete(s.retAhead, s.retSeen+1)
		s.retSeen++
	}
	if len(s.retAhead) > 4096 {
		clear(s.retAhead) // far behind: the next ping reloads
	}
}

// onRetainedNotice applies another broker's retained change.
func (s *Store) onRetainedNotice(m *nats.Msg) {
	rev, _ := strconv.ParseUint(m.Header.Get("Busbar-Rev"), 10, 64)
	s.applyRetained(m.Header.Get("Busbar-Key"), rev, m.Data)
}

// --- ownership ---

// owner is the record of own.<k>.
type owner struct {
	Server string `json:"server"`
	Owner  string `json:"owner"`
	Epoch  uint64 `json:"epoch"`
}

// OnTakeover registers fn for sessions another broker claims.
func (s *Store) OnTakeover(fn func(key string)) {
	s.mu.Lock()
	s.takeover = append(s.takeover, fn)
	s.mu.Unlock()
}

func (s *Store) server() string { return s.b.ID() }

// Claim makes this broker the holder of the session under key.
func (s *Store) Claim(ctx context.Context, key, who string) (*store.SessionState, error) {
	if err := s.Ready(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout+s.opts.ReleaseWait)
	defer cancel()
	s.mu.Lock()
	kv := s.kv
	s.stats.Claims++
	s.mu.Unlock()
	k := enc(key)
	ownKey := "own." + k
	for {
		e, err := kv.Get(ctx, ownKey)
		var prev owner
		var rev uint64
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return nil, fmt.Errorf("%w: %w", store.ErrUnavailable, err)
		default:
			if jerr := json.Unmarshal(e.Value(), &prev); jerr != nil {
				return nil, fmt.Errorf("hub: owner record of %q: %w", key, jerr)
			}
			rev = e.Revision()
			if prev.Owner != who {
				return nil, store.ErrOwned
			}
		}
		next := owner{Server: s.server(), Owner: who, Epoch: prev.Epoch + 1}
		v, _ := json.Marshal(next)
		var nrev uint64
		if rev == 0 {
			nrev, err = kv.Create(ctx, ownKey, v)
		} else {
			nrev, err = kv.Update(ctx, ownKey, v, rev)
		}
		if err != nil {
			if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
				continue // another claim came first: look again
			}
			return nil, fmt.Errorf("%w: %w", store.ErrUnavailable, err)
		}
		s.mu.Lock()
		s.held[key] = nrev
		s.mu.Unlock()
		s.log.Debug("hub: claimed a session", "key", redactKey(key), "from", prev.Server, "epoch", next.Epoch)
		var gone time.Time
		if rev != 0 && prev.Server != s.server() {
			heard := s.lastHeard(ctx, prev.Server)
			if s.askRelease(ctx, prev.Server, key) {
				gone = heard
			}
		}
		if rev != 0 && prev.Server == s.server() {
			return nil, nil // held here already: the local state is it
		}
		st, err := s.load(ctx, k)
		if st != nil {
			st.Gone = gone
		}
		return st, err
	}
}

// askRelease asks the previous holder to let go of the session and waits
// for its answer, at most ReleaseWait; a holder that is gone answers at
// once with no responders. It reports whether the holder is gone (no
// responders, or no answer in time): it may not have stored everything
// that reached it.
func (s *Store) askRelease(ctx context.Context, server, key string) bool {
	ctx, cancel := context.WithTimeout(ctx, s.opts.ReleaseWait)
	defer cancel()
	_, err := s.nc.RequestWithContext(ctx, takeoverSubject(server), []byte(key))
	if err != nil && !errors.Is(err, nats.ErrNoResponders) {
		s.log.Info("hub: previous holder did not release the session in time; taking it", "key", redactKey(key), "err", err)
	}
	return err != nil
}

// onTakeoverRequest: another broker claimed a session held here: drop it
// locally, then answer once what was written for it is durable.
func (s *Store) onTakeoverRequest(m *nats.Msg) {
	key := string(m.Data)
	s.mu.Lock()
	_, held := s.held[key]
	delete(s.held, key)
	delete(s.out, key)
	delete(s.subs, key)
	delete(s.sess, key)
	fns := s.takeover
	if held {
		s.stats.Takeovers++
	}
	s.mu.Unlock()
	s.log.Debug("hub: another instance takes a session over", "key", redactKey(key), "held", held)
	if held {
		for _, fn := range fns {
			fn(key)
		}
	}
	s.Durable(func(error) { _ = m.Respond([]byte("released")) })
}

// load reads the stored state of session k.
func (s *Store) load(ctx context.Context, k string) (*store.SessionState, error) {
	s.mu.Lock()
	kv := s.kv
	s.mu.Unlock()
	st := &store.SessionState{}
	e, err := kv.Get(ctx, "s."+k)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("%w: %w", store.ErrUnavailable, err)
	}
	st.Session = new(store.Session)
	if err := json.Unmarshal(e.Value(), st.Session); err != nil {
		return nil, fmt.Errorf("hub: session record: %w", err)
	}
	keys, err := kv.ListKeysFiltered(ctx, "o."+k+".>", "i."+k+".>", "u."+k+".>")
	if err != nil {
		return nil, fmt.Errorf("%w: %w", store.ErrUnavailable, err)
	}
	var names []string
	for name := range keys.Keys() {
		names = append(names, name)
	}
	if ctx.Err() != nil { // cut short at the deadline: not the whole session
		return nil, fmt.Errorf("%w: listing the session: %w", store.ErrUnavailable, ctx.Err())
	}
	key, _ := dec(k)
	subs := map[string]bool{}
	for _, name := range names {
		if strings.HasPrefix(name, "u.") {
			e, err := kv.Get(ctx, name)
			if errors.Is(err, jetstream.ErrKeyNotFound) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("%w: %w", store.ErrUnavailable, err)
			}
			var sub store.Subscription
			if json.Unmarshal(e.Value(), &sub) != nil {
				continue
			}
			subs[sub.Filter] = true
			st.Session.Subs = slices.DeleteFunc(st.Session.Subs, func(x store.Subscription) bool { return x.Filter == sub.Filter })
			st.Session.Subs = append(st.Session.Subs, sub)
			continue
		}
		if strings.HasPrefix(name, "i.") {
			id, err := strconv.Atoi(name[strings.LastIndexByte(name, '.')+1:])
			if err == nil {
				st.Inbound = append(st.Inbound, uint16(id))
			}
			continue
		}
		e, err := kv.Get(ctx, name)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %w", store.ErrUnavailable, err)
		}
		var d doneRecord
		if json.Unmarshal(e.Value(), &d) == nil && d.Done != "" {
			st.Done = append(st.Done, d.Done)
			continue
		}
		f := new(store.Inflight)
		if err := json.Unmarshal(e.Value(), f); err != nil {
			continue
		}
		st.Inflight = append(st.Inflight, f)
	}
	sort.Slice(st.Inflight, func(i, j int) bool { return st.Inflight[i].Seq < st.Inflight[j].Seq })
	s.log.Debug("hub: loaded a session", "key", redactKey(key), "subscriptions", len(st.Session.Subs), "outbound", len(st.Inflight), "inbound", len(st.Inbound))
	s.mu.Lock()
	m := map[uint64]*store.Inflight{}
	for _, f := range st.Inflight {
		m[f.Seq] = f
	}
	s.out[key] = m
	s.subs[key] = subs
	rec := *st.Session
	rec.Subs = slices.DeleteFunc(slices.Clone(rec.Subs), func(x store.Subscription) bool { return subs[x.Filter] })
	s.sess[key] = &rec
	s.mu.Unlock()
	return st, nil
}

// Unclaim gives up the session under key: its owner record is removed if
// it is still this broker's.
func (s *Store) Unclaim(key string) {
	s.mu.Lock()
	rev, ok := s.held[key]
	delete(s.held, key)
	kv := s.kv
	s.mu.Unlock()
	if !ok || kv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.Timeout)
	defer cancel()
	if err := s.deleteKey(ctx, kv, StateBucket, "own."+enc(key), rev); err != nil && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) && !errors.Is(err, jetstream.ErrKeyExists) {
		s.log.Debug("hub: releasing a session", "err", err)
	}
}

// redactKey names a session key in a log without its NUL byte.
func redactKey(key string) string {
	acc, id := broker.SplitStoreKey(key)
	return acc + "/" + id
}
