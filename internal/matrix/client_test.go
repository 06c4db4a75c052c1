package matrix

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho5 "github.com/eclipse/paho.golang/paho"
	paho3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats.go"

	"github.com/busbar/busbar/auth"
	"github.com/busbar/busbar/broker"
)

// tp is a transport a client of the matrix connects over.
type tp string

const (
	natsTCP tp = "nats"    // nats.go over TCP
	natsWS  tp = "natsws"  // nats.go over WebSocket
	mqtt3   tp = "mqtt311" // paho.mqtt.golang, MQTT 3.1.1 over TCP
	mqtt5   tp = "mqtt5"   // paho.golang, MQTT 5.0 over TCP
	mqttWS  tp = "mqttws"  // paho.mqtt.golang, MQTT 3.1.1 over WebSocket
	inproc  tp = "inproc"  // broker.Local / LocalAs
)

var transports = []tp{natsTCP, natsWS, mqtt3, mqtt5, mqttWS, inproc}

var mqttTransports = []tp{mqtt3, mqtt5, mqttWS}

func (x tp) mqtt() bool { return x == mqtt3 || x == mqtt5 || x == mqttWS }

// msg is a received message, its topic mapped to the NATS subject form.
type msg struct {
	subj, data string
	retained   bool
}

// client is one connection of any transport. Everything it receives, on
// any of its subscriptions, goes to msgs in the order it arrived.
type client struct {
	name    string
	tp      tp
	msgs    chan msg
	errs    chan error    // NATS asynchronous errors
	lost    chan struct{} // closed when the broker ends the connection
	present bool          // MQTT: CONNACK's session present

	lostOnce sync.Once
	lostErr  atomic.Value // error
	closing  atomic.Bool

	nc     *nats.Conn
	natsCh chan *nats.Msg // every NATS subscription delivers here, in order
	done   chan struct{}  // closed by close
	m3     paho3.Client
	m5     *paho5.Client
	loc    *broker.Local
}

// dialOpts are the options of a connection.
type dialOpts struct {
	id      string // MQTT client id; a unique one when empty
	persist bool   // MQTT: a persistent session (clean session 0 / session expiry)
}

var ids atomic.Int64

func uniqueID(prefix string) string { return fmt.Sprintf("%s%d", prefix, ids.Add(1)) }

// password of every configured user.
func password(user string) string { return user + "-pw" }

// dial connects user ("" for an anonymous in-process client) over x. The
// connection is closed when the test ends.
func dial(t *testing.T, s *server, x tp, user string, o ...dialOpts) *client {
	t.Helper()
	c, err := tryDial(s, x, user, o...)
	if err != nil {
		t.Fatalf("connect %s as %q: %v", x, user, err)
	}
	t.Cleanup(c.close)
	return c
}

func tryDial(s *server, x tp, user string, o ...dialOpts) (*client, error) {
	var opt dialOpts
	if len(o) > 0 {
		opt = o[0]
	}
	if opt.id == "" {
		opt.id = uniqueID("m")
	}
	c := &client{name: user + "@" + string(x), tp: x, msgs: make(chan msg, 4096), errs: make(chan error, 64),
		lost: make(chan struct{}), done: make(chan struct{})}
	s.mu.Lock()
	natsURL, wsURL, mqttHP, b := s.natsURL, s.wsURL, s.mqttHP, s.b
	s.mu.Unlock()
	var err error
	switch x {
	case natsTCP:
		err = c.dialNATS(natsURL, user)
	case natsWS:
		err = c.dialNATS(wsURL, user)
	case mqtt3:
		err = c.dial3("tcp://"+mqttHP, user, opt)
	case mqttWS:
		err = c.dial3(wsURL+"/mqtt", user, opt)
	case mqtt5:
		err = c.dial5(mqttHP, user, opt)
	case inproc:
		err = c.dialLocal(b, user)
	default:
		err = fmt.Errorf("unknown transport %q", x)
	}
	if err != nil {
		return nil, err
	}
	return c, nil
}

func (c *client) setLost(err error) {
	if c.closing.Load() {
		return
	}
	c.lostOnce.Do(func() {
		if err == nil {
			err = errors.New("closed")
		}
		c.lostErr.Store(err)
		close(c.lost)
	})
}

func (c *client) dialNATS(url, user string) error {
	opts := []nats.Option{
		nats.NoReconnect(), nats.Timeout(wait), nats.Name(c.name),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			select {
			case c.errs <- err:
			default:
			}
		}),
		nats.ClosedHandler(func(nc *nats.Conn) { c.setLost(nc.LastError()) }),
	}
	if user != "" {
		opts = append(opts, nats.UserInfo(user, password(user)))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return err
	}
	c.nc = nc
	c.natsCh = make(chan *nats.Msg, 4096)
	go func() {
		for {
			select {
			case m := <-c.natsCh:
				c.put(msg{subj: m.Subject, data: string(m.Data)})
			case <-c.done:
				return
			}
		}
	}()
	return nil
}

func (c *client) dial3(url, user string, o dialOpts) error {
	opts := paho3.NewClientOptions().AddBroker(url).SetClientID(o.id).SetCleanSession(!o.persist).
		SetProtocolVersion(4).SetAutoReconnect(false).SetConnectRetry(false).SetOrderMatters(true).
		SetConnectTimeout(wait).SetWriteTimeout(wait).SetKeepAlive(time.Minute).
		SetDefaultPublishHandler(func(_ paho3.Client, m paho3.Message) {
			c.put(msg{subj: topicSubject(m.Topic()), data: string(m.Payload()), retained: m.Retained()})
		}).
		SetConnectionLostHandler(func(_ paho3.Client, err error) { c.setLost(err) })
	if user != "" {
		opts.SetUsername(user).SetPassword(password(user))
	}
	m := paho3.NewClient(opts)
	tok := m.Connect()
	if !tok.WaitTimeout(wait) {
		return errors.New("CONNECT timed out")
	}
	if err := tok.Error(); err != nil {
		return err
	}
	c.present = tok.(*paho3.ConnectToken).SessionPresent()
	c.m3 = m
	return nil
}

func (c *client) dial5(hostPort, user string, o dialOpts) error {
	conn, err := net.DialTimeout("tcp", hostPort, wait)
	if err != nil {
		return err
	}
	m := paho5.NewClient(paho5.ClientConfig{
		Conn: conn,
		OnPublishReceived: []func(paho5.PublishReceived) (bool, error){func(pr paho5.PublishReceived) (bool, error) {
			p := pr.Packet
			c.put(msg{subj: topicSubject(p.Topic), data: string(p.Payload), retained: p.Retain})
			return true, nil
		}},
		OnClientError:      func(err error) { c.setLost(err) },
		OnServerDisconnect: func(d *paho5.Disconnect) { c.setLost(fmt.Errorf("DISCONNECT 0x%02x", d.ReasonCode)) },
	})
	cp := &paho5.Connect{ClientID: o.id, CleanStart: !o.persist, KeepAlive: 60}
	if o.persist {
		expiry := uint32(3600)
		cp.Properties = &paho5.ConnectProperties{SessionExpiryInterval: &expiry}
	}
	if user != "" {
		cp.UsernameFlag, cp.Username = true, user
		cp.PasswordFlag, cp.Password = true, []byte(password(user))
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	ack, err := m.Connect(ctx, cp)
	if err != nil {
		conn.Close()
		return err
	}
	c.present = ack.SessionPresent
	c.m5 = m
	go func() {
		<-m.Done()
		c.setLost(errors.New("connection ended"))
	}()
	return nil
}

// dialLocal connects an in-process client: anonymous for user "", else
// LocalAs the identity the broker's authenticator gives user.
func (c *client) dialLocal(b *broker.Broker, user string) error {
	var id *auth.Identity
	if user != "" {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		var err error
		id, err = b.Authenticate(ctx, &auth.Credentials{Conn: auth.ConnInProcess, User: user, Password: password(user)})
		if err != nil {
			return fmt.Errorf("authenticate: %w", err)
		}
	}
	l, err := b.LocalAs(c.name, id)
	if err != nil {
		return err
	}
	c.loc = l
	return nil
}

func (c *client) put(m msg) {
	select {
	case c.msgs <- m:
	default:
		panic("matrix: a client's message buffer is full")
	}
}

// close ends the connection cleanly (MQTT: DISCONNECT, so a persistent
// session goes offline and no will is sent).
func (c *client) close() {
	if c.closing.Swap(true) {
		return
	}
	defer close(c.done)
	switch {
	case c.nc != nil:
		c.nc.Close()
	case c.m3 != nil:
		c.m3.Disconnect(250)
	case c.m5 != nil:
		_ = c.m5.Disconnect(&paho5.Disconnect{ReasonCode: 0})
	case c.loc != nil:
		c.loc.Close(nil)
	}
}

// topicSubject maps an MQTT topic of the matrix to its subject (the
// matrix's tokens hold neither '.' nor '/').
func topicSubject(topic string) string { return strings.ReplaceAll(topic, "/", ".") }

// mqttTopic maps a subject or filter of the matrix to MQTT.
func mqttTopic(subj string) string {
	r := strings.NewReplacer(".", "/", ">", "#", "*", "+")
	return r.Replace(subj)
}

// publish sends data on subj and returns once the broker has routed it:
// NATS flushes (the PONG follows the PUB), MQTT waits for the PUBACK of
// a QoS 1 PUBLISH, in-process Publish returns after routing. The error is
// the broker's refusal where the protocol reports one (MQTT 5 PUBACK
// 0x87, in-process ErrPermPublish); NATS and MQTT 3.1.1 report none.
func (c *client) publish(t *testing.T, subj, data string) error {
	t.Helper()
	return c.send(t, subj, data, false)
}

// retain publishes a retained message (MQTT only).
func (c *client) retain(t *testing.T, subj, data string) error {
	t.Helper()
	if !c.tp.mqtt() {
		t.Fatalf("%s: retained messages are MQTT's", c.name)
	}
	return c.send(t, subj, data, true)
}

func (c *client) send(t *testing.T, subj, data string, retain bool) error {
	t.Helper()
	switch {
	case c.nc != nil:
		if err := c.nc.Publish(subj, []byte(data)); err != nil {
			t.Fatalf("%s: publish %s: %v", c.name, subj, err)
		}
		if err := c.nc.FlushTimeout(wait); err != nil {
			t.Fatalf("%s: flush after %s: %v", c.name, subj, err)
		}
		return nil
	case c.m3 != nil:
		tok := c.m3.Publish(mqttTopic(subj), 1, retain, data)
		if !tok.WaitTimeout(wait) {
			t.Fatalf("%s: no PUBACK for %s", c.name, subj)
		}
		if err := tok.Error(); err != nil {
			t.Fatalf("%s: publish %s: %v", c.name, subj, err)
		}
		return nil
	case c.m5 != nil:
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		pr, err := c.m5.Publish(ctx, &paho5.Publish{Topic: mqttTopic(subj), QoS: 1, Retain: retain, Payload: []byte(data)})
		if pr != nil && pr.ReasonCode >= 0x80 {
			return fmt.Errorf("PUBACK 0x%02x", pr.ReasonCode)
		}
		if err != nil {
			t.Fatalf("%s: publish %s: %v", c.name, subj, err)
		}
		return nil
	case c.loc != nil:
		return c.loc.Publish(subj, []byte(data))
	}
	t.Fatalf("%s: not connected", c.name)
	return nil
}

// subscribe asks for filter (NATS form) and reports whether the broker
// granted it: the MQTT SUBACK code, the in-process error. NATS refuses
// asynchronously (-ERR): subscribe returns true; use refused.
func (c *client) subscribe(t *testing.T, filter string) bool {
	t.Helper()
	switch {
	case c.nc != nil:
		if _, err := c.nc.ChanSubscribe(filter, c.natsCh); err != nil {
			t.Fatalf("%s: subscribe %s: %v", c.name, filter, err)
		}
		if err := c.nc.FlushTimeout(wait); err != nil {
			t.Fatalf("%s: flush after SUB %s: %v", c.name, filter, err)
		}
		return true
	case c.m3 != nil:
		tok := c.m3.Subscribe(mqttTopic(filter), 1, nil)
		if !tok.WaitTimeout(wait) {
			t.Fatalf("%s: no SUBACK for %s", c.name, filter)
		}
		if err := tok.Error(); err != nil {
			return false
		}
		return tok.(*paho3.SubscribeToken).Result()[mqttTopic(filter)] < 0x80
	case c.m5 != nil:
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		sa, err := c.m5.Subscribe(ctx, &paho5.Subscribe{Subscriptions: []paho5.SubscribeOptions{{Topic: mqttTopic(filter), QoS: 1}}})
		if sa == nil && err != nil {
			t.Fatalf("%s: subscribe %s: %v", c.name, filter, err)
		}
		return len(sa.Reasons) == 1 && sa.Reasons[0] < 0x80
	case c.loc != nil:
		_, err := c.loc.Subscribe(filter, func(m *broker.Message) {
			c.put(msg{subj: string(m.Subject), data: string(m.Payload)})
		})
		return err == nil
	}
	t.Fatalf("%s: not connected", c.name)
	return false
}
