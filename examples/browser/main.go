// Command browser serves a small chat page whose browser side talks to an
// embedded busbar over WebSocket with nats.ws, authenticated by a cookie
// at the WebSocket handshake: /login sets an HttpOnly cookie holding the
// user's API key, and the upgrade request carries it to busbar, which
// checks it before upgrading (a missing or wrong key is refused with close
// code 4401 the page can read). The WebSocket handler is mounted on the
// application's own mux at /ws, beside its pages.
//
//	go run ./examples/browser -addr 127.0.0.1:8090
//	open http://127.0.0.1:8090/login?user=ann (and another tab as bob)
//
// nats.ws is served from the npm package the browser tests install
// (npm ci --prefix internal/browser/js), or from -js FILE.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"

	"github.com/busbar/busbar/auth"
	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/websocket"
)

// users are the app's accounts: each logs in to busbar with its API key,
// which only the server and the user's HttpOnly cookie know.
var users = map[string]string{"ann": "key-ann-5b1e", "bob": "key-bob-77c0"}

const cookieName = "busbar_key"

// app is the host application: its mux, with busbar inside.
type app struct {
	b   *broker.Broker
	mux *http.ServeMux
}

func newApp(jsFile string) (*app, error) {
	var list []auth.User
	for name, key := range users {
		list = append(list, auth.User{Name: name, APIKey: key, Perms: &auth.Permissions{
			Publish:   &auth.SubjectPermission{Allow: []string{"chat.>"}},
			Subscribe: &auth.SubjectPermission{Allow: []string{"chat.>", "_INBOX.>"}},
		}})
	}
	a, err := auth.New(auth.Options{Users: list})
	if err != nil {
		return nil, err
	}
	b, err := broker.New(broker.Options{Authenticator: a})
	if err != nil {
		return nil, err
	}
	ws, err := websocket.New(websocket.Options{
		SameOrigin: true, // a cookie carries the credential: refuse other sites' pages
		Handshake: websocket.Handshake{
			Required: true, KeyAuth: websocket.Source{Cookie: cookieName}, CloseOnFailure: true,
		},
	})
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/ws", ws.Handler(b))
	mux.HandleFunc("/login", func(w http.ResponseWriter, r *http.Request) {
		key, ok := users[r.URL.Query().Get("user")]
		if !ok {
			http.Error(w, "unknown user", http.StatusForbidden)
			return
		}
		http.SetCookie(w, &http.Cookie{Name: cookieName, Value: key, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
		next := "/?user=" + r.URL.Query().Get("user")
		if r.URL.Query().Get("selftest") != "" {
			next += "&selftest=1"
		}
		http.Redirect(w, r, next, http.StatusFound)
	})
	mux.HandleFunc("/js/nats.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript")
		http.ServeFile(w, r, jsFile)
	})
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(page))
	})
	return &app{b: b, mux: mux}, nil
}

// defaultJS is nats.ws from the browser tests' npm packages.
func defaultJS() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "internal", "browser", "js", "node_modules", "nats.ws", "esm", "nats.js")
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8090", "listen `ADDRESS`")
	js := flag.String("js", defaultJS(), "nats.ws ESM bundle `FILE` (npm package nats.ws, esm/nats.js)")
	flag.Parse()
	if _, err := os.Stat(*js); err != nil {
		log.Fatalf("browser: %v: run `npm ci --prefix internal/browser/js` or pass -js", err)
	}
	a, err := newApp(*js)
	if err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("chat on http://%s/login?user=ann\n", ln.Addr())
	srv := &http.Server{Handler: a.mux}
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt)
		<-sig
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
	_ = a.b.Shutdown(context.Background())
}

// page is the chat: nats.ws connects to /ws on the same origin, so the
// browser sends the HttpOnly cookie with the upgrade request.
const page = `<!doctype html><html><head><meta charset="utf-8"><title>busbar chat</title></head>
<body><h1>busbar chat</h1>
<form id="f"><input id="text" autocomplete="off"><button>send</button></form>
<ul id="log"></ul>
<script type="module">
import { connect, StringCodec } from '/js/nats.js';
const sc = StringCodec();
const params = new URLSearchParams(location.search);
const user = params.get('user') || '?';
const selftest = params.get('selftest'); // the test sends one line and stops at its echo
const log = (s) => { const li = document.createElement('li'); li.textContent = s; document.getElementById('log').append(li); };
window.__result = { received: [] };
try {
  const nc = await connect({ servers: 'ws://' + location.host + '/ws' });
  const sub = nc.subscribe('chat.room');
  document.getElementById('f').onsubmit = (ev) => {
    ev.preventDefault();
    nc.publish('chat.room', sc.encode(user + ': ' + document.getElementById('text').value));
  };
  window.__send = (s) => nc.publish('chat.room', sc.encode(user + ': ' + s));
  if (selftest) window.__send('hello');
  for await (const m of sub) {
    const s = sc.decode(m.data);
    log(s);
    window.__result.received.push(s);
    if (selftest && s.endsWith(': hello')) { await nc.close(); window.__done = true; }
  }
} catch (e) {
  log('error: ' + e);
  window.__result.error = String(e);
  window.__done = true;
}
</script></body></html>`
