package config

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"

	"github.com/busbar/busbar/leafnode"
	"github.com/busbar/busbar/transport"
)

// LeafnodeService builds the leaf node links of `leafnodes { remotes [...] }`,
// ready for Broker.Start; nil, nil when no remote is configured.
// Certificate and credentials files are read here, so a bad one is
// reported before the broker starts.
func (c *Config) LeafnodeService(logger *slog.Logger) (*leafnode.Service, error) {
	ln := c.Leafnodes
	if ln == nil || len(ln.Remotes) == 0 {
		return nil, nil
	}
	o := leafnode.Options{Reconnect: ln.Reconnect, Logger: logger}
	for i, r := range ln.Remotes {
		lr := leafnode.Remote{
			URLs: r.URLs, Account: r.Account, Credentials: r.Credentials, NKey: r.NKey,
			User: r.User, Password: r.Password, DenyImports: r.DenyImports, DenyExports: r.DenyExports,
			NoRandomize: r.NoRandomize, FirstInfoTimeout: r.FirstInfoTimeout, DialTimeout: r.DialTimeout,
			WSCompression: r.WSCompression, WSNoMasking: r.WSNoMasking,
		}
		if r.TLS != nil {
			cfg, err := clientTLS(r.TLS)
			if err != nil {
				return nil, fmt.Errorf("leafnodes remote %d: %w", i+1, err)
			}
			lr.TLS, lr.TLSHandshakeFirst, lr.TLSTimeout = cfg, r.TLS.HandshakeFirst, r.TLS.Timeout
		}
		o.Remotes = append(o.Remotes, lr)
	}
	s, err := leafnode.New(o)
	if err != nil {
		return nil, fmt.Errorf("leafnodes: %w", err)
	}
	return s, nil
}

// clientTLS builds a client-side TLS configuration: ca_file verifies the
// hub (system roots without it), cert_file/key_file are the client
// certificate when the hub asks for one.
func clientTLS(o *transport.TLSOptions) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	switch o.MinVersion {
	case "", "1.2":
	case "1.3":
		cfg.MinVersion = tls.VersionTLS13
	default:
		return nil, fmt.Errorf("%w: min_version %q (want \"1.2\" or \"1.3\")", transport.ErrTLSConfig, o.MinVersion)
	}
	if o.CertFile != "" || o.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("%w: load cert_file %s / key_file %s: %w", transport.ErrTLSConfig, o.CertFile, o.KeyFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%w: ca_file: %w", transport.ErrTLSConfig, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: ca_file %s holds no PEM certificate", transport.ErrTLSConfig, o.CAFile)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}
