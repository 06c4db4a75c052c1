package hub

// The publish log: every MQTT publish of QoS 1 or 2 an instance accepts is
// also written to the stream BUSBAR_MQTT_LOG in the hub before its PUBACK
// (or PUBREC) leaves, and kept for logMaxAge. An instance that dies
// (kill -9) may not have stored the messages that reached it for the
// sessions it held, and nothing stores those published for them before
// another instance takes them (about 3 s): whoever loads such a session
// (store.SessionState.Gone set) replays the log since its holder was last
// alive, skipping what the session holds already (by store.Message.ID,
// which the leaf link carries as a "Busbar-Id" header). store.PublishLog.
//
//	$BUSBAR.mqtt.log.<a>.<subject>   one publish; <a> is "_" and the
//	                                 account in unpadded base64url
//	Busbar-Id     its id (broker.LogID)
//	Busbar-From   the publishing session's key, base64url
//	Busbar-Flags  QoS << 1 | retain, hex
//	Busbar-Props  MQTT 5.0 properties, base64; Busbar-Expires their expiry
//	Busbar-Subject  a subject over 1 KiB, whose entry is on
//	              $BUSBAR.mqtt.log.<a>._long.<its SHA-256 in hex>

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/busbar/busbar/store"
)

// The log stream and its bounds: a session is taken within seconds of its
// holder's death (peerSilence, or its client's next CONNECT), so a couple
// of minutes is ample; past MaxBytes the oldest entries go first.
const (
	LogStream     = "BUSBAR_MQTT_LOG"
	logPrefix     = "$BUSBAR.mqtt.log."
	logMaxAge     = 2 * time.Minute
	logMaxBytes   = 1 << 30
	hdrLogID      = "Busbar-Id"
	hdrLogFrom    = "Busbar-From"
	hdrLogFlags   = "Busbar-Flags"
	hdrLogSubject = "Busbar-Subject" // a subject past logMaxSubject
	logMaxSubject = 1024
	logLongToken  = "_long"
	replayMargin  = 2 * time.Second // before the holder's last sign of life: what it may not have stored yet
	replayMaxWait = 10              // × Options.Timeout for one replay
)

var _ store.PublishLog = (*Store)(nil)

// logStream creates (or binds) the log stream, with the replica rule of
// the buckets.
func (s *Store) logStream(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	if _, err := s.js.Stream(ctx, LogStream); err == nil {
		return nil
	}
	var err error
	for _, r := range s.replicaCounts() {
		// An account with JetStream limits may not give 1 GiB: less then.
		for _, size := range []int64{logMaxBytes, logMaxBytes / 4, logMaxBytes / 16} {
			_, err = s.js.CreateStream(ctx, jetstream.StreamConfig{Name: LogStream, Subjects: []string{logPrefix + ">"},
				Retention: jetstream.LimitsPolicy, Storage: jetstream.FileStorage, Replicas: r,
				MaxAge: logMaxAge, MaxBytes: size, Discard: jetstream.DiscardOld})
			if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
				return nil
			}
			if err == nil {
				s.log.Info("hub: created stream", "stream", LogStream, "replicas", r, "max_bytes", size)
				return nil
			}
		}
	}
	return fmt.Errorf("hub: stream %s: %w", LogStream, err)
}

func logAccountToken(account string) string { return "_" + enc(account) }

// LogPublish writes one accepted publish to the log; Durable waits for it.
func (s *Store) LogPublish(account, from string, m *store.Message) error {
	out := &nats.Msg{Subject: logPrefix + logAccountToken(account) + "." + string(m.Subject), Data: m.Payload, Header: nats.Header{}}
	if len(m.Subject) > logMaxSubject {
		// A long subject travels in a header and the entry is filed
		// under its hash: the stream's subjects stay short, and the
		// line stays far below what the hub takes on a leaf link.
		sum := sha256.Sum256(m.Subject)
		out.Subject = logPrefix + logAccountToken(account) + "." + logLongToken + "." + hex.EncodeToString(sum[:])
		out.Header.Set(hdrLogSubject, string(m.Subject))
	}
	out.Header.Set(hdrLogID, m.ID)
	out.Header.Set(hdrLogFrom, enc(from))
	flags := uint64(m.QoS&3) << 1
	if m.Retain {
		flags |= flagRetain
	}
	out.Header.Set(hdrLogFlags, strconv.FormatUint(flags, 16))
	if len(m.Props) > 0 {
		out.Header.Set(hdrRProps, base64.StdEncoding.EncodeToString(m.Props))
	}
	if m.Expires != 0 {
		out.Header.Set(hdrRExpires, strconv.FormatInt(m.Expires, 10))
	}
	_, err := s.publish(out)
	return err
}

// decodeLog reads one log entry of account.
func decodeLog(account string, msg jetstream.Msg) (from string, m *store.Message, ok bool) {
	subj, ok := strings.CutPrefix(msg.Subject(), logPrefix+logAccountToken(account)+".")
	if !ok {
		return "", nil, false
	}
	h := msg.Headers()
	flags, err := strconv.ParseUint(h.Get(hdrLogFlags), 16, 8)
	if err != nil {
		return "", nil, false
	}
	if long := h.Get(hdrLogSubject); long != "" {
		subj = long
	}
	from, _ = dec(h.Get(hdrLogFrom))
	m = &store.Message{Subject: []byte(subj), Payload: msg.Data(), QoS: byte(flags>>1) & 3, Retain: flags&flagRetain != 0, ID: h.Get(hdrLogID)}
	if p := h.Get(hdrRProps); p != "" {
		m.Props, _ = base64.StdEncoding.DecodeString(p)
	}
	if e := h.Get(hdrRExpires); e != "" {
		m.Expires, _ = strconv.ParseInt(e, 10, 64)
	}
	return from, m, true
}

// Replay reads the log entries of account from since (less
// replayMargin) up to the last one logged when it starts, in order. An
// ordered consumer with heartbeats: deliveries to a new inbox can outrun
// its interest across the leaf link and the hub's routes and be lost, and
// the ordered consumer notices (a gap, or no heartbeat) and starts again
// after the last entry it had.
func (s *Store) Replay(ctx context.Context, account string, since time.Time, fn func(from string, m *store.Message)) error {
	ctx, cancel := context.WithTimeout(ctx, replayMaxWait*s.opts.Timeout)
	defer cancel()
	s.mu.Lock()
	js := s.js
	s.mu.Unlock()
	if js == nil {
		return s.Ready()
	}
	st, err := js.Stream(ctx, LogStream)
	if err != nil {
		return fmt.Errorf("hub: stream %s: %w", LogStream, err)
	}
	last := st.CachedInfo().State.LastSeq
	start := since.Add(-replayMargin)
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{logPrefix + logAccountToken(account) + ".>"},
		DeliverPolicy:  jetstream.DeliverByStartTimePolicy, OptStartTime: &start})
	if err != nil {
		return fmt.Errorf("hub: replay %s: %w", LogStream, err)
	}
	if info, err := cons.Info(ctx); err != nil {
		return fmt.Errorf("hub: replay %s: %w", LogStream, err)
	} else if info.NumPending == 0 {
		return nil
	}
	done := make(chan struct{})
	var once sync.Once
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		md, err := msg.Metadata()
		if err != nil || md.Sequence.Stream > last {
			once.Do(func() { close(done) })
			return
		}
		select {
		case <-done:
			return
		default:
		}
		if from, m, ok := decodeLog(account, msg); ok {
			fn(from, m)
		}
		if md.Sequence.Stream == last || md.NumPending == 0 {
			once.Do(func() { close(done) })
		}
	}, jetstream.PullHeartbeat(time.Second), jetstream.PullExpiry(5*time.Second))
	if err != nil {
		return fmt.Errorf("hub: replay %s: %w", LogStream, err)
	}
	defer cc.Stop()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("hub: replay %s: %w", LogStream, ctx.Err())
	}
}
