package browser

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/busbar/busbar/internal/testpeer"
)

// runJSON runs the page and decodes window.__result into v.
func runJSON(t *testing.T, html string, v any) Result {
	t.Helper()
	res := Run(t, Page(t, html), 30*time.Second)
	t.Logf("window.__result %s; console %q", res.Value, res.Console)
	if err := json.Unmarshal(res.Value, v); err != nil {
		t.Fatalf("window.__result %s: %v", res.Value, err)
	}
	return res
}

func TestModulesServeJavaScript(t *testing.T) {
	srv := httptest.NewServer(Modules(t))
	defer srv.Close()
	for _, tc := range []struct {
		name, path string
		status     int
	}{
		{"mqtt bundle", "/mqtt.esm.js", 200},
		{"nats.ws bundle", "/nats.js", 200},
		{"mqtt package dir", "/mqtt/dist/mqtt.esm.js", 200},
		{"nats.ws package dir", "/nats.ws/esm/nats.js", 200},
		{"outside the packages", "/playwright-core/package.json", 404},
		{"no climbing out", "/nats.ws/../playwright-core/package.json", 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := http.Get(srv.URL + tc.path)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("GET %s: status %d, want %d", tc.path, resp.StatusCode, tc.status)
			}
			if tc.status != 200 {
				return
			}
			if ct := resp.Header.Get("Content-Type"); ct != "text/javascript" {
				t.Errorf("GET %s: Content-Type %q, want text/javascript", tc.path, ct)
			}
			if !strings.Contains(string(body), "export") {
				t.Errorf("GET %s: %d bytes without an export", tc.path, len(body))
			}
		})
	}
}

func TestPageImportsMQTTAndNATS(t *testing.T) {
	var got struct{ MQTT, NATS bool }
	res := runJSON(t, `<!doctype html>
<script type="module">
import mqtt from '/mqtt.esm.js';
import { connect } from '/nats.js';
console.log('modules loaded');
window.__result = { mqtt: typeof mqtt.connect === 'function', nats: typeof connect === 'function' };
window.__done = true;
</script>`, &got)
	if !got.MQTT || !got.NATS {
		t.Errorf("window.__result = %s, want mqtt and nats true", res.Value)
	}
	if !slices.Contains(res.Console, "modules loaded") {
		t.Errorf("console %q lacks the page's log line", res.Console)
	}
}

func TestRunReportsTimeout(t *testing.T) {
	url := Page(t, `<!doctype html>
<script>
window.__result = { partial: true };
console.log('never done');
</script>`)
	start := time.Now()
	res, err := RunE(url, 500*time.Millisecond)
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("RunE on a page that never sets __done: err %v, want ErrTimeout", err)
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("timeout of 500ms took %v to report", took)
	}
	if string(res.Value) != `{"partial":true}` {
		t.Errorf("Value %s, want what the page had set", res.Value)
	}
	if !slices.Contains(res.Console, "never done") {
		t.Errorf("console %q lacks the page's log line", res.Console)
	}
}

// TestWebSocketNotBlocked shows the browser's flags let a page on 127.0.0.1
// open WebSockets to other ports there: a closed port gives an error event,
// and a server that completes the handshake gets the page's connection
// open and its first message delivered.
func TestWebSocketNotBlocked(t *testing.T) {
	closed := testpeer.FreePort(t)
	ws := httptest.NewServer(http.HandlerFunc(handshakeAndSay(t, "hello page")))
	defer ws.Close()
	var got struct {
		ClosedError bool
		Message     string
	}
	res := runJSON(t, fmt.Sprintf(`<!doctype html>
<script type="module">
const r = window.__result = {};
await new Promise((done) => {
  const ws = new WebSocket('ws://127.0.0.1:%d/');
  ws.onerror = () => { r.closedError = true; done(); };
  ws.onopen = () => { ws.close(); done(); };
});
const ws = new WebSocket('ws://%s/');
ws.onmessage = (e) => { r.message = e.data; ws.close(); window.__done = true; };
ws.onerror = () => { r.message = 'error'; window.__done = true; };
</script>`, closed, ws.Listener.Addr()), &got)
	if !got.ClosedError {
		t.Errorf("no error event for a closed port: %s", res.Value)
	}
	if got.Message != "hello page" {
		t.Errorf("message %q, want %q; console %q", got.Message, "hello page", res.Console)
	}
}

// handshakeAndSay answers a WebSocket upgrade (RFC 6455 §4.2.2) with the
// standard library alone, sends one text frame and waits for the peer to
// go away.
func handshakeAndSay(t *testing.T, text string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		key := r.Header.Get("Sec-WebSocket-Key")
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") || key == "" {
			http.Error(w, "not a websocket upgrade", http.StatusBadRequest)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		defer conn.Close()
		sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
		fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
			base64.StdEncoding.EncodeToString(sum[:]))
		brw.Write(append([]byte{0x81, byte(len(text))}, text...)) // FIN, text; len < 126
		if err := brw.Flush(); err != nil {
			t.Errorf("write: %v", err)
			return
		}
		_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		_, _ = io.Copy(io.Discard, bufio.NewReader(conn))
	}
}
