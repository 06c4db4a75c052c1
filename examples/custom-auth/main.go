// Command custom-auth embeds busbar with the host application's own
// Authenticator: bearer tokens checked against the app's session store,
// each mapped to per-user permissions, chained with users from the
// configuration. The hook sees which transport a client came in on, and
// for WebSocket clients the upgrade request itself: a browser's
// Authorization header or session cookie is checked at the handshake,
// and an unknown one is refused with 401 before any upgrade.
package main

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/busbar/busbar/auth"
	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/natsproto"
	"github.com/busbar/busbar/websocket"
)

// sessionStore stands for the app's own store of login sessions.
type sessionStore struct {
	mu     sync.Mutex
	tokens map[string]string // bearer token → user name
}

// Authenticate accepts a token the store knows; anything else is left to
// the next Authenticator in the chain (ok=false, no error).
// A WebSocket upgrade's Authorization header is the app's own: a bearer
// token there that the store does not know is refused outright (401).
func (s *sessionStore) Authenticate(_ context.Context, c *auth.Credentials) (*auth.Identity, bool, error) {
	tok, via := c.Token, ""
	if h := c.Header.Get("Authorization"); strings.HasPrefix(h, "Bearer ") && tok == "" {
		tok, via = strings.TrimPrefix(h, "Bearer "), " (upgrade header)"
	}
	s.mu.Lock()
	user, ok := s.tokens[tok]
	s.mu.Unlock()
	switch {
	case tok == "":
		return nil, false, nil
	case !ok && via != "":
		return nil, false, auth.ErrNotAuthorized
	case !ok:
		return nil, false, nil
	}
	fmt.Printf("app session %s via %s%s\n", user, c.Conn, via)
	return &auth.Identity{
		Name: user,
		Perms: &auth.Permissions{ // each user publishes and listens under its own prefix
			Publish:   &auth.SubjectPermission{Allow: []string{"users." + user + ".>"}},
			Subscribe: &auth.SubjectPermission{Allow: []string{"users." + user + ".>", "_INBOX.>"}},
		},
		ConnTypes: auth.ConnTypes(0).Add(auth.ConnStandard).Add(auth.ConnWebSocket).Add(auth.ConnInProcess),
	}, true, nil
}

func main() {
	store := &sessionStore{tokens: map[string]string{"tok-ann-42": "ann"}}
	// The users a configuration file would give (authorization { users }):
	// "ops" with the bcrypt hash of "opspw".
	builtin, err := auth.New(auth.Options{Users: []auth.User{{Name: "ops", Password: "$2a$04$MEFi3LGwzIbqFEO/W.ysI.yhVd1XDXegpW3CK6a9ntJxQBxYodP3C"}}})
	if err != nil {
		log.Fatal(err)
	}
	b, err := broker.New(broker.Options{Authenticator: auth.Chain(store, builtin)})
	if err != nil {
		log.Fatal(err)
	}
	defer b.Shutdown(context.Background())
	nt, err := natsproto.New(natsproto.Options{Host: "127.0.0.1"}) // port 0: any free port
	if err != nil {
		log.Fatal(err)
	}
	wt, err := websocket.New(websocket.Options{Host: "127.0.0.1", NATS: nt})
	if err != nil {
		log.Fatal(err)
	}
	if err := b.Start(nt, wt); err != nil { // binds both, or says which could not
		log.Fatal(err)
	}
	url := "nats://" + nt.Addr().String()

	// An app user over TCP, with the token from its login.
	errs := make(chan error, 1)
	ann, err := nats.Connect(url, nats.Token("tok-ann-42"),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))
	if err != nil {
		log.Fatal(err)
	}
	defer ann.Close()
	// An operator from the configuration, in-process.
	ops, err := nats.Connect("", nats.InProcessServer(natsproto.InProcess(b)), nats.UserInfo("ops", "opspw"))
	if err != nil {
		log.Fatal(err)
	}
	defer ops.Close()

	sub, err := ops.SubscribeSync("users.>")
	if err != nil {
		log.Fatal(err)
	}
	_ = ops.Flush()
	_ = ann.Publish("users.ann.status", []byte("online"))
	m, err := sub.NextMsg(2 * time.Second)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("ops saw %s: %s\n", m.Subject, m.Data)

	_ = ann.Publish("users.bob.status", []byte("spoof"))
	_ = ann.Flush()
	fmt.Println(<-errs)

	_, err = nats.Connect(url, nats.Token("stolen"), nats.NoReconnect())
	fmt.Println(err)

	// A browser-like WebSocket client whose login put the token in the
	// upgrade request's Authorization header: accepted at the handshake.
	wsURL := "ws://" + wt.Addr().String()
	bearer := func(tok string) nats.Option {
		return nats.WebSocketConnectionHeaders(http.Header{"Authorization": {"Bearer " + tok}})
	}
	annWS, err := nats.Connect(wsURL, bearer("tok-ann-42"))
	if err != nil {
		log.Fatal(err)
	}
	defer annWS.Close()
	_ = annWS.Publish("users.ann.status", []byte("on the web"))
	m, err = sub.NextMsg(2 * time.Second)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("ops saw %s: %s\n", m.Subject, m.Data)

	// An unknown token in the header: 401 before the upgrade.
	resp, err := http.DefaultClient.Do(upgradeRequest("http://"+wt.Addr().String(), "Bearer stolen"))
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()
	fmt.Println("upgrade with a stolen token:", resp.Status)
}

// upgradeRequest is a WebSocket upgrade request with an Authorization
// header, as a browser's would be.
func upgradeRequest(url, authorization string) *http.Request {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		log.Fatal(err)
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	req.Header.Set("Authorization", authorization)
	return req
}
