package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/internal/testpeer"
	"github.com/busbar/busbar/mqtt/packet"
)

// The crash test runs busbar as a child process (this test binary,
// re-executed) with a durable store, under QoS 1 and QoS 2 load from raw
// MQTT clients that behave as the spec says (resend with DUP and the same
// packet id after a reconnect; a QoS 2 receiver drops a PUBLISH whose id
// it has not seen PUBREL for), SIGKILLs it at random moments, restarts it
// on the same store, and checks that nothing acknowledged is lost and no
// QoS 2 message is delivered twice. Raw clients, not paho: a library
// that reports a publish complete without its acknowledgement, or hands
// a repeated QoS 2 message to the application, would hide the faults.

func TestMain(m *testing.M) {
	if os.Getenv("BUSBAR_CRASH_CHILD") == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr, nil))
	}
	os.Exit(m.Run())
}

// crashCycles is the number of SIGKILLs (BUSBAR_CRASH_CYCLES overrides:
// bench/crash.sh runs 100 and more).
func crashCycles() int {
	if n, err := strconv.Atoi(os.Getenv("BUSBAR_CRASH_CYCLES")); err == nil && n >= 0 {
		return n
	}
	return 20
}

type child struct {
	cmd  *exec.Cmd
	logs *syncBuffer
}

func startChild(t *testing.T, dir string, natsPort, mqttPort int) *child {
	t.Helper()
	return startChildArgs(t, dir, natsPort, mqttPort)
}

func startChildArgs(t *testing.T, dir string, natsPort, mqttPort int, extra ...string) *child {
	t.Helper()
	exe, err := os.Executable()
	require.NoError(t, err)
	logs := &syncBuffer{}
	args := append([]string{"-p", strconv.Itoa(natsPort), "--mqtt_port", strconv.Itoa(mqttPort), "--ws_port", "0", "-m", "0", "--store_dir", dir}, extra...)
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), "BUSBAR_CRASH_CHILD=1")
	cmd.Stdout, cmd.Stderr = logs, logs
	require.NoError(t, cmd.Start())
	c := &child{cmd: cmd, logs: logs}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if conn, err := net.Dial("tcp", testpeer.Addr(mqttPort)); err == nil {
			conn.Close()
			return c
		}
		time.Sleep(10 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	t.Fatalf("busbar did not start: %s", logs.String())
	return nil
}

func (c *child) kill() {
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	_ = c.cmd.Wait()
}

// rawClient is a minimal MQTT 3.1.1 client over one connection.
type rawClient struct {
	mu      sync.Mutex
	conn    net.Conn
	dec     packet.Decoder
	subacks chan byte // the next SUBACK's code (subscribe)
}

func (r *rawClient) send(b []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.conn != nil {
		_, _ = r.conn.Write(b)
	}
}

// connect opens a persistent session and returns whether it was present.
func (r *rawClient) connect(addr, id string) (bool, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false, err
	}
	_, _ = c.Write(packet.AppendConnect(nil, &packet.ConnectPacket{Version: packet.V311, ClientID: []byte(id), KeepAlive: 30}))
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	ack := make([]byte, 4)
	if _, err := io.ReadFull(c, ack); err != nil || ack[0] != 0x20 || ack[3] != 0 {
		c.Close()
		return false, fmt.Errorf("connack %x: %v", ack, err)
	}
	_ = c.SetReadDeadline(time.Time{})
	r.mu.Lock()
	r.conn = c
	r.mu.Unlock()
	return ack[2]&1 == 1, nil
}

// subscribe sends SUBSCRIBE and waits for its SUBACK, which loop (running)
// reports.
func (r *rawClient) subscribe(topic string, qos byte) error {
	r.mu.Lock()
	r.subacks = make(chan byte, 1)
	ch := r.subacks
	r.mu.Unlock()
	r.send(packet.AppendSubscribe(nil, packet.V311, &packet.SubscribePacket{PacketID: 1, Subs: []packet.Subscription{{Filter: []byte(topic), QoS: qos}}}))
	select {
	case code := <-ch:
		if code != qos {
			return fmt.Errorf("suback code %#x", code)
		}
		return nil
	case <-time.After(20 * time.Second):
		return errors.New("no SUBACK within 20s")
	}
}

// loop decodes packets until the connection ends.
func (r *rawClient) loop(handle func(p packet.Packet)) {
	br := bufio.NewReaderSize(r.conn, 64<<10)
	buf := make([]byte, 0, 64<<10)
	tmp := make([]byte, 32<<10)
	for {
		n, err := br.Read(tmp)
		buf = append(buf, tmp[:n]...)
		for {
			k, ferr := packet.Frame(buf, 1<<20)
			if ferr != nil || k == 0 {
				break
			}
			p, derr := r.dec.Decode(buf[:k], packet.V311)
			if derr == nil && p.Type == packet.Suback {
				r.mu.Lock()
				if r.subacks != nil && len(p.Suback.Codes) == 1 {
					r.subacks <- byte(p.Suback.Codes[0])
					r.subacks = nil
				}
				r.mu.Unlock()
			}
			if derr == nil {
				handle(p)
			}
			buf = append(buf[:0], buf[k:]...)
		}
		if err != nil {
			return
		}
	}
}

func ack(t packet.Type, id uint16) []byte {
	return packet.AppendAck(nil, packet.V311, &packet.AckPacket{Type: t, PacketID: id})
}

// crashState is everything the clients saw, across restarts.
type crashState struct {
	mu sync.Mutex
	// QoS 1 publisher.
	q1Next   int
	q1Unack  map[uint16]int // packet id → message number
	q1Acked  map[int]bool
	q1Got    map[int]int // deliveries to the QoS 1 subscriber
	retAcked int         // the last retained value acknowledged
	// QoS 2 publisher: awaiting PUBREC (false) or PUBCOMP (true).
	q2Next  int
	q2Out   map[uint16]int
	q2Rel   map[uint16]bool
	q2Done  map[int]bool
	q2Got   map[int]int         // deliveries to the QoS 2 subscriber
	q2Seen  map[uint16]struct{} // ids the subscriber holds until PUBREL
	q2Dup   []int               // messages delivered twice
	nextID  uint16
	lost    []string
	q1InFly map[uint16]bool
}

func (s *crashState) id(inUse func(uint16) bool) uint16 {
	for {
		s.nextID++
		if s.nextID == 0 {
			s.nextID = 1
		}
		if !inUse(s.nextID) {
			return s.nextID
		}
	}
}

func TestCrashDurability(t *testing.T) {
	dir := t.TempDir()
	natsPort, mqttPort := testpeer.FreePort(t), testpeer.FreePort(t)
	addr := testpeer.Addr(mqttPort)
	st := &crashState{q1Unack: map[uint16]int{}, q1Acked: map[int]bool{}, q1Got: map[int]int{},
		q2Out: map[uint16]int{}, q2Rel: map[uint16]bool{}, q2Done: map[int]bool{}, q2Got: map[int]int{}, q2Seen: map[uint16]struct{}{}}
	sub1, sub2, pub1, pub2 := &rawClient{}, &rawClient{}, &rawClient{}, &rawClient{}
	cycles := crashCycles()
	var ch *child
	for cycle := 0; cycle <= cycles; cycle++ {
		ch = startChild(t, dir, natsPort, mqttPort)
		var wg sync.WaitGroup
		stop := make(chan struct{})
		// Subscribers first: their sessions must come back every time.
		for _, sc := range []struct {
			c     *rawClient
			id    string
			topic string
			qos   byte
		}{{sub1, "crash-sub1", "crash/q1", 1}, {sub2, "crash-sub2", "crash/q2", 2}} {
			present, err := sc.c.connect(addr, sc.id)
			require.NoError(t, err, "cycle %d: %s", cycle, ch.logs.String())
			if cycle > 0 {
				require.True(t, present, "cycle %d: session %s lost", cycle, sc.id)
			}
		}
		wg.Go(func() { sub1.loop(func(p packet.Packet) { st.onSub1(sub1, p) }) })
		wg.Go(func() { sub2.loop(func(p packet.Packet) { st.onSub2(sub2, p) }) })
		// The SUBACKs before any publish: once in, the subscription is on
		// disk (issue 16, finding 7) and every later publish reaches it.
		for _, sc := range []struct {
			c     *rawClient
			topic string
			qos   byte
		}{{sub1, "crash/q1", 1}, {sub2, "crash/q2", 2}} {
			require.NoError(t, sc.c.subscribe(sc.topic, sc.qos), "cycle %d: %s", cycle, ch.logs.String())
		}
		for _, pc := range []struct {
			c  *rawClient
			id string
		}{{pub1, "crash-pub1"}, {pub2, "crash-pub2"}} {
			_, err := pc.c.connect(addr, pc.id)
			require.NoError(t, err)
		}
		st.resend(pub1, pub2)
		wg.Go(func() { pub1.loop(func(p packet.Packet) { st.onPub1(pub1, p) }) })
		wg.Go(func() { pub2.loop(func(p packet.Packet) { st.onPub2(pub2, p) }) })
		last := cycle == cycles
		wg.Go(func() { st.publish(pub1, pub2, stop, last) })

		if !last {
			time.Sleep(time.Duration(50+rand.IntN(250)) * time.Millisecond)
			ch.kill() // at a random moment under load
			t.Logf("cycle %d: %s", cycle, st.summary())
			close(stop)
			for _, c := range []*rawClient{sub1, sub2, pub1, pub2} {
				c.mu.Lock()
				c.conn.Close()
				c.mu.Unlock()
			}
			wg.Wait()
			continue
		}
		// Last round: publish a little more, stop, let everything drain,
		// then check.
		time.Sleep(300 * time.Millisecond)
		t.Logf("last round: %s", st.summary())
		close(stop)
		require.Eventually(t, func() bool { return st.drained() }, 20*time.Second, 20*time.Millisecond,
			"not drained: %s", st.summary())
		for _, c := range []*rawClient{sub1, sub2, pub1, pub2} {
			c.mu.Lock()
			c.conn.Close()
			c.mu.Unlock()
		}
		wg.Wait()
	}
	defer ch.kill()

	st.mu.Lock()
	defer st.mu.Unlock()
	t.Logf("%d SIGKILLs: QoS 1 %d acked, QoS 2 %d completed", cycles, len(st.q1Acked), len(st.q2Done))
	require.Greater(t, len(st.q1Acked), cycles, "the load made progress")
	require.Greater(t, len(st.q2Done), cycles)
	for n := range st.q1Acked {
		require.Positive(t, st.q1Got[n], "QoS 1 message %d was acknowledged and never delivered", n)
	}
	for n := range st.q2Done {
		require.Equal(t, 1, st.q2Got[n], "QoS 2 message %d delivered %d times", n, st.q2Got[n])
	}
	require.Empty(t, st.q2Dup, "QoS 2 messages delivered twice")

	// Retained state: at least the last acknowledged value.
	ret := &rawClient{}
	ch = startChild(t, dir, natsPort, mqttPort)
	defer ch.kill()
	_, err := ret.connect(addr, "crash-ret")
	require.NoError(t, err)
	got := make(chan int, 1)
	go ret.loop(func(p packet.Packet) {
		if p.Type == packet.Publish && p.Publish.Retain {
			v, _ := strconv.Atoi(string(p.Publish.Payload))
			got <- v
		}
	})
	ret.send(packet.AppendSubscribe(nil, packet.V311, &packet.SubscribePacket{PacketID: 1, Subs: []packet.Subscription{{Filter: []byte("crash/ret")}}}))
	select {
	case v := <-got:
		require.GreaterOrEqual(t, v, st.retAcked, "retained value older than the last acknowledged one")
	case <-time.After(5 * time.Second):
		t.Fatalf("no retained message (last acknowledged %d)", st.retAcked)
	}
	ret.conn.Close()
}

// resend re-sends what the publishers have not had acknowledged, with
// DUP and the same packet ids (PUBREL for QoS 2 past PUBREC).
func (s *crashState) resend(pub1, pub2 *rawClient) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, n := range s.q1Unack {
		pub1.send(packet.AppendPublish(nil, packet.V311, &packet.PublishPacket{Dup: true, QoS: 1, Topic: q1Topic(n), PacketID: id, Payload: []byte(strconv.Itoa(n)), Retain: n%10 == 0}))
	}
	for id, n := range s.q2Out {
		if s.q2Rel[id] {
			pub2.send(ack(packet.Pubrel, id))
		} else {
			pub2.send(packet.AppendPublish(nil, packet.V311, &packet.PublishPacket{Dup: true, QoS: 2, Topic: []byte("crash/q2"), PacketID: id, Payload: []byte(strconv.Itoa(n))}))
		}
	}
}

func q1Topic(n int) []byte {
	if n%10 == 0 {
		return []byte("crash/ret")
	}
	return []byte("crash/q1")
}

// publish keeps up to 32 QoS 1 and 16 QoS 2 messages in flight.
func (s *crashState) publish(pub1, pub2 *rawClient, stop chan struct{}, last bool) {
	budget := 0
	for {
		select {
		case <-stop:
			return
		default:
		}
		if last && budget > 200 {
			return
		}
		s.mu.Lock()
		var out [][]byte
		for len(s.q1Unack) < 32 {
			s.q1Next++
			n := s.q1Next
			id := s.id(func(id uint16) bool { _, a := s.q1Unack[id]; _, b := s.q2Out[id]; return a || b })
			s.q1Unack[id] = n
			out = append(out, packet.AppendPublish(nil, packet.V311, &packet.PublishPacket{QoS: 1, Topic: q1Topic(n), PacketID: id, Payload: []byte(strconv.Itoa(n)), Retain: n%10 == 0}))
			budget++
		}
		for _, b := range out {
			pub1.send(b)
		}
		out = out[:0]
		for len(s.q2Out) < 16 {
			s.q2Next++
			n := s.q2Next
			id := s.id(func(id uint16) bool { _, a := s.q1Unack[id]; _, b := s.q2Out[id]; return a || b })
			s.q2Out[id] = n
			out = append(out, packet.AppendPublish(nil, packet.V311, &packet.PublishPacket{QoS: 2, Topic: []byte("crash/q2"), PacketID: id, Payload: []byte(strconv.Itoa(n))}))
			budget++
		}
		s.mu.Unlock()
		for _, b := range out {
			pub2.send(b)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (s *crashState) onPub1(c *rawClient, p packet.Packet) {
	if p.Type != packet.Puback {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if n, ok := s.q1Unack[p.Ack.PacketID]; ok {
		delete(s.q1Unack, p.Ack.PacketID)
		if n%10 == 0 {
			s.retAcked = max(s.retAcked, n)
		} else {
			s.q1Acked[n] = true
		}
	}
}

func (s *crashState) onPub2(c *rawClient, p packet.Packet) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch p.Type {
	case packet.Pubrec:
		if _, ok := s.q2Out[p.Ack.PacketID]; ok {
			s.q2Rel[p.Ack.PacketID] = true
			c.send(ack(packet.Pubrel, p.Ack.PacketID))
		}
	case packet.Pubcomp:
		if n, ok := s.q2Out[p.Ack.PacketID]; ok && s.q2Rel[p.Ack.PacketID] {
			delete(s.q2Out, p.Ack.PacketID)
			delete(s.q2Rel, p.Ack.PacketID)
			s.q2Done[n] = true
		}
	}
}

func (s *crashState) onSub1(c *rawClient, p packet.Packet) {
	if p.Type != packet.Publish {
		return
	}
	n, _ := strconv.Atoi(string(p.Publish.Payload))
	s.mu.Lock()
	s.q1Got[n]++
	s.mu.Unlock()
	c.send(ack(packet.Puback, p.Publish.PacketID))
}

func (s *crashState) onSub2(c *rawClient, p packet.Packet) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch p.Type {
	case packet.Publish:
		id := p.Publish.PacketID
		if _, held := s.q2Seen[id]; !held {
			n, _ := strconv.Atoi(string(p.Publish.Payload))
			s.q2Got[n]++
			if s.q2Got[n] > 1 {
				s.q2Dup = append(s.q2Dup, n)
			}
			s.q2Seen[id] = struct{}{}
		}
		c.send(ack(packet.Pubrec, id))
	case packet.Pubrel:
		delete(s.q2Seen, p.Ack.PacketID)
		c.send(ack(packet.Pubcomp, p.Ack.PacketID))
	}
}

// drained: nothing awaits an acknowledgement, and every acknowledged
// message has arrived.
func (s *crashState) drained() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.q1Unack) > 0 || len(s.q2Out) > 0 {
		return false
	}
	for n := range s.q1Acked {
		if s.q1Got[n] == 0 {
			return false
		}
	}
	for n := range s.q2Done {
		if s.q2Got[n] == 0 {
			return false
		}
	}
	return true
}

func (s *crashState) summary() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	missing := 0
	for n := range s.q1Acked {
		if s.q1Got[n] == 0 {
			missing++
		}
	}
	var missing2 []int
	for n := range s.q2Done {
		if s.q2Got[n] == 0 {
			missing2 = append(missing2, n)
		}
	}
	return fmt.Sprintf("q1 acked %d unacked %d delivered %d, q2 done %d outstanding %d delivered %d, q1 acked-not-delivered %d, q2 done-not-delivered %v",
		len(s.q1Acked), len(s.q1Unack), len(s.q1Got), len(s.q2Done), len(s.q2Out), len(s.q2Got), missing, missing2)
}

// TestCorruptStoreRefusedOrRepaired: busbar does not start on a store
// with a bad record in the middle (it says where and how to repair), and
// starts with --store_repair, keeping what came before.
func TestCorruptStoreRefusedOrRepaired(t *testing.T) {
	dir := t.TempDir()
	natsPort, mqttPort := testpeer.FreePort(t), testpeer.FreePort(t)
	ch := startChild(t, dir, natsPort, mqttPort)
	c := &rawClient{}
	_, err := c.connect(testpeer.Addr(mqttPort), "keeper")
	require.NoError(t, err)
	c.send(packet.AppendSubscribe(nil, packet.V311, &packet.SubscribePacket{PacketID: 1, Subs: []packet.Subscription{{Filter: []byte("k/#"), QoS: 1}}}))
	time.Sleep(200 * time.Millisecond)
	pub := &rawClient{}
	_, err = pub.connect(testpeer.Addr(mqttPort), "writer")
	require.NoError(t, err)
	for i := range 50 {
		pub.send(packet.AppendPublish(nil, packet.V311, &packet.PublishPacket{QoS: 1, Topic: []byte("k/x"), PacketID: uint16(i + 1), Payload: []byte(strconv.Itoa(i))}))
	}
	time.Sleep(300 * time.Millisecond)
	ch.kill()
	path := dir + "/busbar.log"
	first, err := os.Stat(path)
	require.NoError(t, err)
	require.Greater(t, first.Size(), int64(400))

	// A second life appends complete commit groups after the first one's,
	// so a bad byte in the first half is followed by good data: corrupt,
	// not a torn tail (which recovery cuts back without refusing).
	ch = startChild(t, dir, natsPort, mqttPort)
	pub = &rawClient{}
	_, err = pub.connect(testpeer.Addr(mqttPort), "writer2")
	require.NoError(t, err)
	for i := range 20 {
		pub.send(packet.AppendPublish(nil, packet.V311, &packet.PublishPacket{QoS: 1, Topic: []byte("k/y"), PacketID: uint16(i + 1), Payload: []byte(strconv.Itoa(i))}))
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	ch.kill()

	data, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Greater(t, int64(len(data)), first.Size(), "the second life wrote more")
	data[first.Size()/2] ^= 0x40
	require.NoError(t, os.WriteFile(path, data, 0o640))

	var out, errb syncBuffer
	stop := make(chan os.Signal, 1)
	done := make(chan int, 1)
	go func() {
		done <- run([]string{"-p", strconv.Itoa(natsPort), "--mqtt_port", strconv.Itoa(mqttPort), "--ws_port", "0", "-m", "0", "--store_dir", dir}, &out, &errb, stop)
	}()
	var code int
	select {
	case code = <-done:
	case <-time.After(15 * time.Second):
		stop <- syscall.SIGTERM
		<-done
		t.Fatalf("busbar started on a corrupt store:\n%s", errb.String())
	}
	require.Equal(t, 1, code)
	require.Contains(t, errb.String(), "corrupt log")
	require.Contains(t, errb.String(), "repair")

	ch = startChildArgs(t, dir, natsPort, mqttPort, "--store_repair")
	defer ch.kill()
	require.Eventually(t, func() bool { return bytes.Contains([]byte(ch.logs.String()), []byte("repaired a corrupt log")) }, 5*time.Second, 20*time.Millisecond, ch.logs.String())
	present, err := (&rawClient{}).connect(testpeer.Addr(mqttPort), "keeper")
	require.NoError(t, err)
	require.True(t, present, "the session from before the bad record is kept")
}
