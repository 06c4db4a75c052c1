package natsproto_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/auth"
	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/natsproto"
	"github.com/busbar/busbar/transport"
)

// certAuthority issues throw-away certificates into dir.
type certAuthority struct {
	t    *testing.T
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string
	n    int64
}

func newCA(t *testing.T) *certAuthority {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "auth test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	ca := &certAuthority{t: t, dir: t.TempDir(), key: key, n: 1}
	ca.cert, _ = x509.ParseCertificate(der)
	ca.file = ca.write("ca.pem", "CERTIFICATE", der)
	return ca
}

func (ca *certAuthority) write(name, typ string, der []byte) string {
	p := filepath.Join(ca.dir, name)
	require.NoError(ca.t, os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
	return p
}

// issue signs tmpl and returns the certificate and key files.
func (ca *certAuthority) issue(name string, tmpl *x509.Certificate, usage x509.ExtKeyUsage) (string, string) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(ca.t, err)
	ca.n++
	tmpl.SerialNumber = big.NewInt(ca.n)
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{usage}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	require.NoError(ca.t, err)
	kder, err := x509.MarshalECPrivateKey(key)
	require.NoError(ca.t, err)
	return ca.write(name+".pem", "CERTIFICATE", der), ca.write(name+"-key.pem", "EC PRIVATE KEY", kder)
}

func TestAuthTLSVerifyAndMap(t *testing.T) {
	ca := newCA(t)
	srvCert, srvKey := ca.issue("server", &x509.Certificate{
		Subject: pkix.Name{CommonName: "localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}, x509.ExtKeyUsageServerAuth)
	spiffe, _ := url.Parse("spiffe://example.org/worker")
	oidDC := asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 25}
	clients := []struct {
		name string
		tmpl *x509.Certificate
		want string // user mapped to; "" refused
	}{
		{"email SAN first", &x509.Certificate{Subject: pkix.Name{CommonName: "svc.example.com"},
			EmailAddresses: []string{"alice@example.com"}, DNSNames: []string{"svc.example.com"}}, "alice@example.com"},
		{"DNS SAN", &x509.Certificate{Subject: pkix.Name{CommonName: "x"}, DNSNames: []string{"svc.example.com"}}, "svc.example.com"},
		{"URI SAN", &x509.Certificate{Subject: pkix.Name{CommonName: "x"}, URIs: []*url.URL{spiffe}}, "spiffe://example.org/worker"},
		{"RFC 2253 DN", &x509.Certificate{Subject: pkix.Name{CommonName: "dn-user", OrganizationalUnit: []string{"eng"}, Organization: []string{"acme"}}}, "CN=dn-user,OU=eng,O=acme"},
		{"DN written reordered", &x509.Certificate{Subject: pkix.Name{CommonName: "reordered", Organization: []string{"acme"}}}, "O=acme,CN=reordered"},
		{"DN with domain components", &x509.Certificate{Subject: pkix.Name{CommonName: "dc-user",
			ExtraNames: []pkix.AttributeTypeAndValue{{Type: oidDC, Value: "example"}, {Type: oidDC, Value: "com"}}}}, "CN=dc-user,DC=com,DC=example"},
		{"subject CN as name", &x509.Certificate{Subject: pkix.Name{CommonName: "plain-cn"}}, "CN=plain-cn"},
		{"unmapped", &x509.Certificate{Subject: pkix.Name{CommonName: "stranger"}, EmailAddresses: []string{"eve@example.com"}}, ""},
	}
	var users []auth.User
	for _, n := range []string{"alice@example.com", "svc.example.com", "spiffe://example.org/worker",
		"CN=dn-user,OU=eng,O=acme", "O=acme,CN=reordered", "CN=dc-user,DC=com,DC=example", "CN=plain-cn"} {
		users = append(users, auth.User{Name: n})
	}
	rec := &recorder{}
	var err error
	rec.a, err = auth.New(auth.Options{Users: users, TLSMap: true, Logger: testLogger(t)})
	require.NoError(t, err)
	b, err := broker.New(broker.Options{Authenticator: rec, Logger: testLogger(t)})
	require.NoError(t, err)
	nt, err := natsproto.New(natsproto.Options{Host: "127.0.0.1", TLS: &transport.TLSOptions{
		CertFile: srvCert, KeyFile: srvKey, CAFile: ca.file, VerifyAndMap: true,
	}})
	require.NoError(t, err)
	require.NoError(t, nt.Listen())
	require.NoError(t, b.Start(nt))
	s := &server{b: b, t: nt}
	t.Cleanup(func() { s.shutdown(t) })

	for i, c := range clients {
		t.Run(c.name, func(t *testing.T) {
			cert, key := ca.issue("client"+string(rune('a'+i)), c.tmpl, x509.ExtKeyUsageClientAuth)
			nc, err := nats.Connect("tls://"+nt.Addr().String(), nats.RootCAs(ca.file), nats.ClientCert(cert, key),
				nats.NoReconnect(), nats.UserInfo("ignored", "ignored"))
			if c.want == "" {
				require.ErrorIs(t, err, nats.ErrAuthorization)
				return
			}
			require.NoError(t, err)
			defer nc.Close()
			require.NoError(t, nc.Flush())
			names := rec.names()
			require.Equal(t, c.want, names[len(names)-1])
		})
	}
}
