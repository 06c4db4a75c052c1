package hub

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/mqtt"
	"github.com/busbar/busbar/store"
)

// Retained messages shared with nats-server's MQTT. The retained messages
// of the account the leaf link binds live where nats-server leaves with
// `mqtt { js_domain }` keep theirs in the same hub account: the stream
// $MQTT_rmsgs, one record per NATS subject on $MQTT.rmsgs.<subject>
// (at most one message per subject). A record is the message's payload
// with headers:
//
//	Nmqtt-RTopic   the MQTT topic (informational: readers take the subject)
//	Nmqtt-RFlags   the PUBLISH flags nibble in hex (1 retain, QoS << 1);
//	               a leading '-' and an empty payload: the message was cleared
//	Nmqtt-ROrigin  who wrote it (nats-server: a hash of its name)
//	Nmqtt-RSource  the publishing user (nats-server only)
//	Busbar-Props   MQTT 5.0 properties, base64 (busbar only: nats-server's
//	Busbar-Expires MQTT is 3.1.1, it ignores both)
//
// Servers before nats-server 2.10.10 wrote a JSON record instead (payload
// base64 in "msg", "flags" a number); it is read too. Every instance
// follows the stream with an ordered consumer (nats-server leaves with an
// ephemeral push consumer), so a record written by either is applied by
// all. A nats-server that clears a message deletes its marker once it
// applied it and says so on $MQTT.JSA.<origin>.RD ({"subject","seq"} of
// the message cleared); busbar listens there too, for a marker deleted
// before its consumer reached it. busbar leaves its own markers (they
// expire after rmsgsMarkerTTL when the stream allows message TTLs).
// Retained messages of busbar's other local accounts stay in
// BUSBAR_MQTT_RETAINED: no nats-server account matches them.
const (
	rmsgsStream    = "$MQTT_rmsgs"
	rmsgsPrefix    = "$MQTT.rmsgs."
	rmsgsDeletions = "$MQTT.JSA.*.RD"

	hdrRTopic    = "Nmqtt-RTopic"
	hdrRFlags    = "Nmqtt-RFlags"
	hdrROrigin   = "Nmqtt-ROrigin"
	hdrRSource   = "Nmqtt-RSource"
	hdrRProps    = "Busbar-Props"
	hdrRExpires  = "Busbar-Expires"
	flagRetain   = 0x1
	rmsgsLoadMax = 3 // × Options.Timeout for the initial load
)

// rmsgsMarkerTTL: how long busbar's own clear markers stay when the
// stream allows message TTLs (a consumer that was away reloads whole).
const rmsgsMarkerTTL = time.Minute

// linkAccount is the local account whose retained messages are shared
// with nats-server leaves: the one the leaf link binds.
func (s *Store) linkAccount() string {
	if s.opts.Account == "" {
		return broker.GlobalAccount
	}
	return s.opts.Account
}

// rmsgsSubject is the NATS subject of a retained key kept in $MQTT_rmsgs,
// "" for a key of another account.
func (s *Store) rmsgsSubject(key string) string {
	acc, subj := broker.SplitStoreKey(key)
	if acc != s.linkAccount() {
		return ""
	}
	return subj
}

// encodeRmsg is the $MQTT_rmsgs record of retained message m on NATS
// subject subj (m nil or without payload: the clear marker).
func encodeRmsg(subj string, m *store.Message, origin string) *nats.Msg {
	out := &nats.Msg{Subject: rmsgsPrefix + subj, Header: nats.Header{}}
	out.Header.Set(hdrRTopic, string(mqtt.SubjectToTopic(nil, []byte(subj))))
	if m == nil || len(m.Payload) == 0 {
		out.Header.Set(hdrRFlags, "-"+strconv.FormatUint(flagRetain, 16))
	} else {
		out.Header.Set(hdrRFlags, strconv.FormatUint(uint64(flagRetain|(m.QoS&3)<<1), 16))
		out.Data = m.Payload
		if len(m.Props) > 0 {
			out.Header.Set(hdrRProps, base64.StdEncoding.EncodeToString(m.Props))
		}
		if m.Expires != 0 {
			out.Header.Set(hdrRExpires, strconv.FormatInt(m.Expires, 10))
		}
	}
	if origin != "" {
		out.Header.Set(hdrROrigin, origin)
	}
	return out
}

// legacyRmsg is the JSON record of servers before the header form.
type legacyRmsg struct {
	Origin string `json:"origin"`
	Msg    []byte `json:"msg"`
	Flags  byte   `json:"flags"`
}

var errRmsg = errors.New("hub: not a retained message record")

// decodeRmsg reads a $MQTT_rmsgs record stored on subject: the NATS
// subject it retains for, the message (nil: cleared) and its origin.
func decodeRmsg(subject string, h nats.Header, data []byte) (subj string, m *store.Message, origin string, err error) {
	subj, ok := strings.CutPrefix(subject, rmsgsPrefix)
	if !ok || subj == "" {
		return "", nil, "", errRmsg
	}
	var flags uint64
	if f := h.Get(hdrRFlags); f != "" {
		if len(f) > 1 && f[0] == '-' {
			f = f[1:]
		}
		if flags, err = strconv.ParseUint(f, 16, 8); err != nil {
			return "", nil, "", fmt.Errorf("%w: flags %q", errRmsg, h.Get(hdrRFlags))
		}
		origin = h.Get(hdrROrigin)
	} else {
		var l legacyRmsg
		if err := json.Unmarshal(data, &l); err != nil {
			return "", nil, "", fmt.Errorf("%w: %w", errRmsg, err)
		}
		flags, origin, data = uint64(l.Flags), l.Origin, l.Msg
	}
	qos := byte(flags>>1) & 3
	if flags > 0xf || qos > 2 {
		return "", nil, "", fmt.Errorf("%w: flags %#x", errRmsg, flags)
	}
	if len(data) == 0 {
		return subj, nil, origin, nil
	}
	m = &store.Message{Subject: []byte(subj), Payload: append([]byte(nil), data...), QoS: qos, Retain: true}
	if p := h.Get(hdrRProps); p != "" {
		if m.Props, err = base64.StdEncoding.DecodeString(p); err != nil {
			return "", nil, "", fmt.Errorf("%w: %s: %w", errRmsg, hdrRProps, err)
		}
	}
	if e := h.Get(hdrRExpires); e != "" {
		if m.Expires, err = strconv.ParseInt(e, 10, 64); err != nil {
			return "", nil, "", fmt.Errorf("%w: %s: %w", errRmsg, hdrRExpires, err)
		}
	}
	return subj, m, origin, nil
}

// rmsgsStreamFor binds $MQTT_rmsgs, creating it as nats-server would
// (limits, one message per subject, file storage) when no nats-server
// leaf made it first; busbar's also allows message TTLs.
func (s *Store) rmsgsStreamFor(ctx context.Context) (jetstream.Stream, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	st, err := s.js.Stream(ctx, rmsgsStream)
	if err == nil || !errors.Is(err, jetstream.ErrStreamNotFound) {
		return st, err
	}
	for _, r := range s.replicaCounts() {
		st, err = s.js.CreateStream(ctx, jetstream.StreamConfig{Name: rmsgsStream, Subjects: []string{rmsgsPrefix + ">"},
			Retention: jetstream.LimitsPolicy, Storage: jetstream.FileStorage, MaxMsgsPerSubject: 1, Replicas: r, AllowMsgTTL: true})
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return s.js.Stream(ctx, rmsgsStream)
		}
		if err == nil {
			s.log.Info("hub: created stream", "stream", rmsgsStream, "replicas", r)
			return st, nil
		}
	}
	return nil, err
}

// followRmsgs loads $MQTT_rmsgs into the broker and keeps following it
// until stop: every record up to the stream's last sequence at the start
// is applied before it returns, and subjects applied earlier (a previous
// link) that the stream no longer holds are cleared.
func (s *Store) followRmsgs(ctx context.Context) (stop func(), err error) {
	st, err := s.rmsgsStreamFor(ctx)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", rmsgsStream, err)
	}
	info := st.CachedInfo()
	origin := "busbar-" + s.server()
	s.mu.Lock()
	s.rmOrigin, s.rmTTL = origin, info.Config.AllowMsgTTL
	if s.rmRev == nil {
		s.rmRev = map[string]uint64{}
	}
	s.mu.Unlock()
	dels, err := s.nc.Subscribe(rmsgsDeletions, s.onRmsgDeleted)
	if err != nil {
		return nil, err
	}
	ld := &rmsgsLoad{last: info.State.LastSeq, seen: map[string]bool{}, done: make(chan struct{})}
	if info.State.Msgs == 0 {
		ld.finish()
	}
	cons, err := s.js.OrderedConsumer(ctx, rmsgsStream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{rmsgsPrefix + ">"}})
	if err != nil {
		_ = dels.Unsubscribe()
		return nil, err
	}
	// Heartbeats every 2 s: a consumer lost with the hub node it was on
	// is recreated within 4 s (nats.go's default waits 30 s).
	cc, err := cons.Consume(func(msg jetstream.Msg) { s.onRmsg(msg, ld) },
		jetstream.PullExpiry(10*time.Second), jetstream.PullHeartbeat(2*time.Second),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			s.log.Debug("hub: following "+rmsgsStream, "err", err)
		}))
	if err != nil {
		_ = dels.Unsubscribe()
		return nil, err
	}
	stop = func() { cc.Stop(); _ = dels.Unsubscribe() }
	select {
	case <-ld.done:
	case <-ctx.Done():
		stop()
		return nil, ctx.Err()
	case <-time.After(rmsgsLoadMax * s.opts.Timeout):
		stop()
		return nil, fmt.Errorf("%s: not loaded within %v", rmsgsStream, rmsgsLoadMax*s.opts.Timeout)
	}
	s.sweepRmsgs(ld)
	return stop, nil
}

// rmsgsLoad tracks the initial load of $MQTT_rmsgs: the subjects seen up
// to its last sequence then.
type rmsgsLoad struct {
	last    uint64
	seen    map[string]bool // consumer goroutine only, until done
	done    chan struct{}
	settled bool
}

func (l *rmsgsLoad) finish() {
	if !l.settled {
		l.settled = true
		close(l.done)
	}
}

// onRmsg applies one record of the consumer (its goroutine).
func (s *Store) onRmsg(msg jetstream.Msg, ld *rmsgsLoad) {
	meta, err := msg.Metadata()
	if err != nil {
		return
	}
	seq := meta.Sequence.Stream
	subj, m, origin, err := decodeRmsg(msg.Subject(), msg.Headers(), msg.Data())
	if !ld.settled {
		if err == nil {
			ld.seen[subj] = true
		}
		if seq >= ld.last || meta.NumPending == 0 {
			defer ld.finish() // after this record is applied
		}
	}
	if err != nil {
		s.log.Debug("hub: skipped a record of "+rmsgsStream, "subject", msg.Subject(), "err", err)
		return
	}
	s.applyRmsg(subj, seq, m, origin)
}

// applyRmsg hands the record at stream sequence seq to the broker unless
// a later one for subj was applied, or this instance wrote it (its index
// had it first: applying it again could undo a later local set whose
// acknowledgement is still on its way).
func (s *Store) applyRmsg(subj string, seq uint64, m *store.Message, origin string) {
	s.mu.Lock()
	if s.rmRev[subj] >= seq {
		s.mu.Unlock()
		return
	}
	s.rmRev[subj] = seq
	own := origin == s.rmOrigin
	fns := s.retained
	s.mu.Unlock()
	if own {
		return
	}
	key := broker.RetainedKey(s.linkAccount(), subj)
	for _, fn := range fns {
		fn(key, m)
	}
}

// sweepRmsgs clears the subjects applied before this load (an earlier
// link) that the stream no longer held at its start: their clear markers
// were deleted while this instance was away.
func (s *Store) sweepRmsgs(ld *rmsgsLoad) {
	s.mu.Lock()
	var gone []string
	for subj, rev := range s.rmRev {
		if !ld.seen[subj] && rev <= ld.last {
			gone = append(gone, subj)
			delete(s.rmRev, subj)
		}
	}
	fns := s.retained
	s.mu.Unlock()
	for _, subj := range gone {
		key := broker.RetainedKey(s.linkAccount(), subj)
		for _, fn := range fns {
			fn(key, nil)
		}
	}
}

// rmsgDeleted is nats-server's notice that it deleted the message at Seq
// retained for Subject (its clear marker may be gone before a consumer
// reached it).
type rmsgDeleted struct {
	Subject string `json:"subject"`
	Seq     uint64 `json:"seq"`
}

func (s *Store) onRmsgDeleted(m *nats.Msg) {
	var d rmsgDeleted
	if json.Unmarshal(m.Data, &d) != nil || d.Subject == "" {
		return
	}
	s.mu.Lock()
	applied := s.rmRev[d.Subject]
	if applied == 0 || (d.Seq != 0 && applied != d.Seq) {
		s.mu.Unlock()
		return // not the message held here
	}
	delete(s.rmRev, d.Subject)
	fns := s.retained
	s.mu.Unlock()
	key := broker.RetainedKey(s.linkAccount(), d.Subject)
	for _, fn := range fns {
		fn(key, nil)
	}
}

// setRmsg writes the retained message of NATS subject subj to
// $MQTT_rmsgs (m nil: cleared); every instance's consumer applies it.
func (s *Store) setRmsg(subj string, m *store.Message) error {
	s.mu.Lock()
	origin, ttl := s.rmOrigin, s.rmTTL
	s.mu.Unlock()
	rec := encodeRmsg(subj, m, origin)
	if rec.Data == nil && ttl {
		rec.Header.Set(jetstream.MsgTTLHeader, rmsgsMarkerTTL.String())
	}
	w, err := s.publish(rec)
	if err != nil {
		return err
	}
	s.Durable(func(err error) {
		if err != nil || w.ack == nil {
			return
		}
		s.mu.Lock()
		if w.ack.Sequence > s.rmRev[subj] {
			s.rmRev[subj] = w.ack.Sequence
		}
		s.mu.Unlock()
	})
	return nil
}
