package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/busbar/busbar/internal/browser"
)

// dialWS upgrades to the chat's /ws with the given Cookie header and
// returns what the broker says first, or how it closed.
func dialWS(srvURL, cookie string) string {
	d := ws.Dialer{Timeout: 3 * time.Second}
	if cookie != "" {
		d.Header = ws.HandshakeHeaderHTTP(http.Header{"Cookie": {cookie}})
	}
	conn, br, _, err := d.Dial(context.Background(), "ws"+strings.TrimPrefix(srvURL, "http")+"/ws")
	if err != nil {
		return "dial: " + err.Error()
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
	var r io.Reader = conn
	if br != nil { // frames that arrived with the 101
		r = io.MultiReader(br, conn)
	}
	for {
		f, err := ws.ReadFrame(r)
		if err != nil {
			return "read: " + err.Error()
		}
		switch {
		case f.Header.OpCode == ws.OpClose:
			code, reason := ws.ParseCloseFrameData(f.Payload)
			return fmt.Sprintf("closed %d: %s", code, reason)
		case strings.HasPrefix(string(f.Payload), "INFO "):
			_ = wsutil.WriteClientBinary(conn, []byte("CONNECT {}\r\nSUB chat.room 1\r\nPUB chat.room 5\r\nhello\r\n"))
		case strings.HasPrefix(string(f.Payload), "MSG "):
			msg := string(f.Payload)
			i := strings.Index(msg, "\r\n")
			return msg[:i] + " " + strings.TrimSpace(msg[i:])
		}
	}
}

func Example() {
	a, err := newApp(defaultJS())
	if err != nil {
		panic(err)
	}
	srv := httptest.NewServer(a.mux)
	defer srv.Close()
	defer a.b.Shutdown(context.Background())

	// Log in as ann: the server sets the HttpOnly cookie.
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar}
	resp, err := client.Get(srv.URL + "/login?user=ann")
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	u, _ := url.Parse(srv.URL)
	cookie := jar.Cookies(u)[0]

	fmt.Println(dialWS(srv.URL, cookie.Name+"="+cookie.Value))
	fmt.Println(dialWS(srv.URL, ""))
	fmt.Println(dialWS(srv.URL, cookieName+"=stolen"))
	// Output:
	// MSG chat.room 1 5 hello
	// closed 4401: credentials required
	// closed 4401: invalid credentials
}

// TestChatInBrowser loads the page in Debian's chromium: it logs in,
// connects with nats.ws using the cookie, sends a line and sees it back.
func TestChatInBrowser(t *testing.T) {
	a, err := newApp(defaultJS())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a.mux)
	t.Cleanup(srv.Close)
	t.Cleanup(func() { _ = a.b.Shutdown(context.Background()) })
	res := browser.Run(t, srv.URL+"/login?user=bob&selftest=1", 45*time.Second)
	var got struct {
		Received []string `json:"received"`
		Error    string   `json:"error"`
	}
	if err := json.Unmarshal(res.Value, &got); err != nil {
		t.Fatalf("%s: %v (console %q)", res.Value, err, res.Console)
	}
	if got.Error != "" || len(got.Received) == 0 || got.Received[0] != "bob: hello" {
		t.Fatalf("page result %+v, console %q", got, res.Console)
	}
}
