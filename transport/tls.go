package transport

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"strings"
	"time"
)

// TLSOptions is a `tls {}` block, shared by every transport.
type TLSOptions struct {
	CertFile, KeyFile, CAFile string
	Verify                    bool          // require and verify a client certificate
	VerifyAndMap              bool          // verify, and map the certificate to a user
	Timeout                   time.Duration // handshake timeout; default 2s as nats-server (0.5s × 4)
	MinVersion                string        // "1.2" or "1.3"; default 1.2
	CipherSuites              []string
	HandshakeFirst            bool // NATS: TLS before INFO
}

// Config builds a server *tls.Config. Errors name the file and say why.
func (o *TLSOptions) Config() (*tls.Config, error) {
	if o.CertFile == "" || o.KeyFile == "" {
		return nil, fmt.Errorf("%w: cert_file and key_file are both required", ErrTLSConfig)
	}
	cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("%w: load cert_file %s / key_file %s: %w", ErrTLSConfig, o.CertFile, o.KeyFile, err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	switch o.MinVersion {
	case "", "1.2":
	case "1.3":
		cfg.MinVersion = tls.VersionTLS13
	default:
		return nil, fmt.Errorf("%w: min_version %q (want \"1.2\" or \"1.3\")", ErrTLSConfig, o.MinVersion)
	}
	if len(o.CipherSuites) > 0 {
		ids, err := cipherIDs(o.CipherSuites)
		if err != nil {
			return nil, err
		}
		cfg.CipherSuites = ids
	}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%w: ca_file: %w", ErrTLSConfig, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: ca_file %s holds no PEM certificate", ErrTLSConfig, o.CAFile)
		}
		cfg.ClientCAs = pool
	}
	if o.Verify || o.VerifyAndMap {
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

func cipherIDs(names []string) ([]uint16, error) {
	known := map[string]uint16{}
	for _, c := range tls.CipherSuites() {
		known[c.Name] = c.ID
	}
	ids := make([]uint16, 0, len(names))
	for _, n := range names {
		id, ok := known[strings.ToUpper(n)]
		if !ok {
			return nil, fmt.Errorf("%w: unknown cipher suite %q", ErrTLSConfig, n)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// HandshakeTimeout is Timeout or its default.
func (o *TLSOptions) HandshakeTimeout() time.Duration {
	if o == nil || o.Timeout <= 0 {
		return 2 * time.Second
	}
	return o.Timeout
}

// ServerHandshake wraps c in TLS and completes the handshake within
// timeout (a deadline on c, so when it passes the error wraps
// os.ErrDeadlineExceeded and c is still open: the caller may tell the
// client in the clear, as nats-server does) or until ctx ends.
func ServerHandshake(ctx context.Context, c net.Conn, cfg *tls.Config, timeout time.Duration) (*tls.Conn, error) {
	tc := tls.Server(c, cfg)
	_ = c.SetDeadline(time.Now().Add(timeout))
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, fmt.Errorf("transport: tls handshake: %w", err)
	}
	_ = c.SetDeadline(time.Time{})
	return tc, nil
}

// TLSStateProvider is a connection over TLS that is not a *tls.Conn
// itself (a WebSocket connection over wss://).
type TLSStateProvider interface {
	TLSState() *tls.ConnectionState
}

// TLSState returns the TLS state of c (a *tls.Conn or a
// TLSStateProvider), or nil when c is not over TLS.
func TLSState(c net.Conn) *tls.ConnectionState {
	switch t := c.(type) {
	case *tls.Conn:
		st := t.ConnectionState()
		return &st
	case TLSStateProvider:
		return t.TLSState()
	}
	return nil
}
