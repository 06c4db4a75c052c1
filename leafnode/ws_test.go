package leafnode_test

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/busbar/busbar/internal/natsserver"
	"github.com/busbar/busbar/internal/testcert"
	"github.com/busbar/busbar/internal/testpeer"
	"github.com/busbar/busbar/leafnode"
)

// TestLeafWebSocket: a busbar leaf linked through the hub's websocket
// port (ws://, path /leafnode) and a busbar leaf on its leafnode port
// exchange messages both ways, small and large (64 KiB: 8-byte frame
// lengths, and several reads per frame), with every combination of
// ws_compression and ws_no_masking; the negotiated result is checked in
// the link's debug line. The hub compresses and accepts no-masking.
func TestLeafWebSocket(t *testing.T) {
	cases := []struct {
		name               string
		compress, noMask   bool
		wantDeflate, wantM bool // negotiated: compression, masking
	}{
		{name: "masked", wantM: true},
		{name: "compression", compress: true, wantDeflate: true, wantM: true},
		{name: "no_masking", noMask: true},
		{name: "compression+no_masking", compress: true, noMask: true, wantDeflate: true},
	}
	forVersions(t, func(t *testing.T, bin string) {
		wsPort := testpeer.FreePort(t)
		hub := natsserver.Start(t, bin, natsserver.Config{
			Top: fmt.Sprintf("websocket { host: 127.0.0.1, port: %d, no_tls: true, compression: true }\n", wsPort),
		})
		wsURL := "ws://" + testpeer.Addr(wsPort)
		b := startCaptured(t, "leafTCP")
		b.addLeaf(t, leafnode.Options{Reconnect: 100 * time.Millisecond, Remotes: []leafnode.Remote{{URLs: []string{hub.LeafURL}}}})
		b.waitUp(t)
		cb := connect(t, b.nats)
		for i, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				a := startCaptured(t, fmt.Sprint("leafWS", i))
				a.addLeaf(t, leafnode.Options{Reconnect: 100 * time.Millisecond, Remotes: []leafnode.Remote{{
					URLs: []string{wsURL}, WSCompression: tc.compress, WSNoMasking: tc.noMask}}})
				a.waitUp(t)
				up := a.log.lines(t, "leafnode: websocket upgraded")
				if len(up) == 0 || up[0]["compression"] != tc.wantDeflate || up[0]["masking"] != tc.wantM {
					t.Fatalf("negotiated %v, want compression=%v masking=%v", up, tc.wantDeflate, tc.wantM)
				}
				if st := a.stats(); st.URL != wsURL {
					t.Fatalf("link on %q, want %q", st.URL, wsURL)
				}
				ca := connect(t, a.nats)
				subA, _ := ca.SubscribeSync(fmt.Sprint("to.ws.", i))
				subB, _ := cb.SubscribeSync(fmt.Sprint("to.tcp.", i))
				ca.Flush()
				cb.Flush()
				published(t, cb, subA, fmt.Sprint("to.ws.", i))
				published(t, ca, subB, fmt.Sprint("to.tcp.", i))
				big := bytes.Repeat([]byte("0123456789abcdef"), 4096)
				payload := func(j int) []byte {
					p := []byte(fmt.Sprint(j, ";"))
					if j%50 == 0 {
						p = append(p, big...)
					}
					return p
				}
				const n = 200
				for j := range n {
					ca.Publish(fmt.Sprint("to.tcp.", i), payload(j))
					cb.Publish(fmt.Sprint("to.ws.", i), payload(j))
				}
				ca.Flush()
				cb.Flush()
				for j := range n {
					for side, s := range map[string]*nats.Subscription{"ws leaf": subA, "tcp leaf": subB} {
						m, err := s.NextMsg(5 * time.Second)
						if err != nil || !bytes.Equal(m.Data, payload(j)) {
							t.Fatalf("%s message %d: %v", side, j, err)
						}
					}
				}
			})
		}
		t.Run("not a websocket port", func(t *testing.T) {
			a := startCaptured(t, "leafWSBad")
			a.addLeaf(t, leafnode.Options{Reconnect: 100 * time.Millisecond, Remotes: []leafnode.Remote{{
				URLs: []string{strings.Replace(hub.LeafURL, "nats-leaf://", "ws://", 1)}}}})
			eventually(t, "the upgrade failure", func() error {
				if st := a.stats(); !strings.Contains(st.LastError, "websocket upgrade") || st.Up {
					return fmt.Errorf("%+v", st)
				}
				return nil
			})
		})
	})
}

// TestLeafWebSocketURLs: ws:// and wss:// URLs are accepted (default
// ports 80 and 443), but not mixed with non-websocket ones in a remote,
// as nats-server requires.
func TestLeafWebSocketURLs(t *testing.T) {
	for _, tc := range []struct {
		urls []string
		ok   bool
	}{
		{[]string{"ws://hub1:8080", "ws://hub2"}, true},
		{[]string{"wss://hub1", "ws://hub2:80/base"}, true},
		{[]string{"ws://hub1", "nats-leaf://hub2"}, false},
		{[]string{"tls://hub1", "wss://hub2"}, false},
	} {
		_, err := leafnode.New(leafnode.Options{Remotes: []leafnode.Remote{{URLs: tc.urls}}})
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, leafnode.ErrBadURL)) {
			t.Errorf("%v: %v", tc.urls, err)
		}
	}
}

// TestLeafWebSocketTLS: a wss:// link to a hub whose websocket port
// requires TLS, verified with the test CA; traffic flows both ways.
func TestLeafWebSocketTLS(t *testing.T) {
	forVersions(t, func(t *testing.T, bin string) {
		cf := testcert.Write(t)
		wsPort := testpeer.FreePort(t)
		hub := natsserver.Start(t, bin, natsserver.Config{
			Top: fmt.Sprintf("websocket { host: 127.0.0.1, port: %d, tls { cert_file: %q, key_file: %q } }\n", wsPort, cf.ServerCert, cf.ServerKey),
		})
		a := startCaptured(t, "leafWSS")
		a.addLeaf(t, leafnode.Options{Reconnect: 100 * time.Millisecond, Remotes: []leafnode.Remote{{
			URLs: []string{"wss://" + testpeer.Addr(wsPort)}, TLS: &tls.Config{RootCAs: cf.Pool, MinVersion: tls.VersionTLS12}}}})
		a.waitUp(t)
		ca, ch := connect(t, a.nats), connect(t, hub.ClientURL)
		subA, _ := ca.SubscribeSync("to.a")
		subH, _ := ch.SubscribeSync("to.hub")
		ca.Flush()
		ch.Flush()
		published(t, ch, subA, "to.a")
		published(t, ca, subH, "to.hub")
	})
}
