package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/config"
	"github.com/busbar/busbar/server"
)

// Example starts busbar from a configuration text with a unix {} block,
// then a nats.go client on the socket (nats.SetCustomDialer) and one on
// TCP share one subject space. Shutdown removes the socket file.
func Example() {
	dir, err := os.MkdirTemp("", "busbar-unix")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "busbar.sock")
	cfg, err := config.Parse([]byte(fmt.Sprintf("port: -1\nunix { path: %q, mode: \"0660\" }\n", sock)), "unix.conf")
	if err != nil {
		panic(err)
	}
	s, err := Start(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		panic(err)
	}
	for _, t := range s.Transports() {
		fmt.Println("listener:", t.Name())
	}
	fi, _ := os.Stat(sock)
	fmt.Println("socket mode:", fi.Mode().Perm())

	tcp, err := nats.Connect("nats://" + s.NATS().Addr().String())
	if err != nil {
		panic(err)
	}
	fromTCP, _ := tcp.SubscribeSync("greet.>")
	_ = tcp.Flush()

	local, err := nats.Connect("nats://localhost", nats.SetCustomDialer(unixDialer(sock)))
	if err != nil {
		panic(err)
	}
	fromUnix, _ := local.SubscribeSync("greet.>")
	_ = local.Flush()

	_ = local.Publish("greet.unix", []byte("over the socket"))
	_ = local.Flush()
	_ = tcp.Publish("greet.tcp", []byte("over TCP"))
	_ = tcp.Flush()
	for _, sub := range []*nats.Subscription{fromTCP, fromUnix} {
		for range 2 {
			m, err := sub.NextMsg(5 * time.Second)
			if err != nil {
				panic(err)
			}
			fmt.Printf("%s: %s\n", m.Subject, m.Data)
		}
	}
	local.Close()
	tcp.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	fmt.Println("shutdown:", s.Shutdown(ctx))
	_, err = os.Stat(sock)
	fmt.Println("socket removed:", errors.Is(err, fs.ErrNotExist))
	// Output:
	// listener: nats
	// listener: unix
	// socket mode: -rw-rw----
	// greet.unix: over the socket
	// greet.tcp: over TCP
	// greet.unix: over the socket
	// greet.tcp: over TCP
	// shutdown: <nil>
	// socket removed: true
}

// start runs busbar from text and shuts it down when the test ends.
func start(t *testing.T, text string) *server.Server {
	t.Helper()
	cfg, err := config.Parse([]byte(text), "unix.conf")
	require.NoError(t, err)
	s, err := Start(cfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	return s
}

// TestUnixSocketAuthenticates: the file's users apply on the socket, as
// on TCP: the broker authenticates every transport's connections.
func TestUnixSocketAuthenticates(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "b.sock")
	start(t, fmt.Sprintf(`
port: -1
authorization { users: [ { user: app, password: s3cret, permissions: { publish: "app.>", subscribe: "app.>" } } ] }
unix_socket { path: %q }
`, sock))
	dial := nats.SetCustomDialer(unixDialer(sock))
	_, err := nats.Connect("nats://localhost", dial, nats.UserInfo("app", "wrong"), nats.NoReconnect())
	require.ErrorIs(t, err, nats.ErrAuthorization)

	errs := make(chan error, 1)
	nc, err := nats.Connect("nats://localhost", dial, nats.UserInfo("app", "s3cret"), nats.NoReconnect(),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))
	require.NoError(t, err)
	defer nc.Close()
	sub, err := nc.SubscribeSync("app.>")
	require.NoError(t, err)
	require.NoError(t, nc.Publish("app.x", []byte("allowed")))
	m, err := sub.NextMsg(5 * time.Second)
	require.NoError(t, err)
	require.Equal(t, "allowed", string(m.Data))

	require.NoError(t, nc.Publish("other.x", []byte("denied")))
	select {
	case err := <-errs:
		require.ErrorContains(t, err, `Permissions Violation for Publish to "other.x"`)
	case <-time.After(5 * time.Second):
		t.Fatal("no permissions violation for other.x")
	}
}

// TestUnixBlockErrors: the block's problems come with positions, as a
// built-in block's do.
func TestUnixBlockErrors(t *testing.T) {
	for _, tc := range []struct{ name, text, want string }{
		{"no path", "unix { mode: \"0600\" }\n", `unix.conf:1:6: unix: path is required (the socket file to create)`},
		{"bad mode", "unix { path: /tmp/x.sock, mode: \"0999\" }\n", `unix.conf:1:33: mode: "0999" is not permission bits in octal, such as "0660"`},
		{"unknown key", "unix {\n  path: /tmp/x.sock\n  colour: red\n}\n", `unix.conf:3:3: unknown key "colour" in unix`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Parse([]byte(tc.text), "unix.conf")
			require.EqualError(t, err, tc.want)
		})
	}
}

// TestUnixListen: a socket file left by a dead process is replaced; a
// live socket or a file that is not a socket is refused at Listen, before
// anything serves.
func TestUnixListen(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.Listen("unix", stale)
	require.NoError(t, err)
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	require.NoError(t, ln.Close()) // the file stays, nobody listens
	s := start(t, fmt.Sprintf("port: -1\nunix { path: %q }\n", stale))
	nc, err := nats.Connect("nats://localhost", nats.SetCustomDialer(unixDialer(stale)), nats.NoReconnect())
	require.NoError(t, err)
	nc.Close()

	cfg, err := config.Parse([]byte(fmt.Sprintf("port: -1\nunix { path: %q }\n", stale)), "unix.conf")
	require.NoError(t, err)
	_, err = Start(cfg, nil)
	require.ErrorIs(t, err, syscall.EADDRINUSE, "the socket of the running server")
	require.NotNil(t, s)

	plain := filepath.Join(dir, "plain")
	require.NoError(t, os.WriteFile(plain, []byte("keep me"), 0o600))
	cfg, err = config.Parse([]byte(fmt.Sprintf("port: -1\nunix { path: %q }\n", plain)), "unix.conf")
	require.NoError(t, err)
	_, err = Start(cfg, nil)
	require.ErrorIs(t, err, ErrNotSocket)
	data, err := os.ReadFile(plain)
	require.NoError(t, err)
	require.Equal(t, "keep me", string(data))
}
