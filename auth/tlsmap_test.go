package auth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestTLSMapConnsMapsOnlyThoseListeners: with certificate mapping on the
// MQTT listener only, a certificate names its user over MQTT and nowhere
// else, and the user (no password) never logs in by name alone.
func TestTLSMapConnsMapsOnlyThoseListeners(t *testing.T) {
	a := mustNew(t, Options{
		Users:       []User{{Name: "alice@example.com"}, {Name: "bob", Password: "bpw"}},
		TLSMapConns: ConnTypes(0).Add(ConnMQTT),
	})
	cert := &tls.ConnectionState{PeerCertificates: []*x509.Certificate{{EmailAddresses: []string{"alice@example.com"}}}}
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		c    Credentials
		want string // "" refused
	}{
		{"certificate over MQTT", Credentials{Conn: ConnMQTT, TLS: cert}, "alice@example.com"},
		{"certificate over NATS: not a mapping listener", Credentials{Conn: ConnStandard, TLS: cert}, ""},
		{"certificate over MQTT over WebSocket", Credentials{Conn: ConnMQTTWS, TLS: cert}, ""},
		{"name alone over NATS", Credentials{Conn: ConnStandard, User: "alice@example.com"}, ""},
		{"name alone over MQTT", Credentials{Conn: ConnMQTT, User: "alice@example.com"}, ""},
		{"password user, no certificate", Credentials{Conn: ConnStandard, User: "bob", Password: "bpw"}, "bob"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, ok, err := a.Authenticate(ctx, &tc.c)
			require.NoError(t, err)
			if tc.want == "" {
				require.False(t, ok)
				return
			}
			require.True(t, ok)
			require.Equal(t, tc.want, id.Name)
		})
	}
	_, err := New(Options{TLSMapConns: ConnTypes(0).Add(ConnStandard)})
	require.ErrorIs(t, err, ErrConfig, "mapping with no users to map to")
}

// TestMQTTPasswordCarriesToken: an MQTT client has no token field; its
// password is the token, with any user name or none (the transport
// block's Token and the main authorization token alike). A NATS
// client's password is never a token.
func TestMQTTPasswordCarriesToken(t *testing.T) {
	ctx := context.Background()
	for name, a := range map[string]Authenticator{
		"Token":       Token("s3cret"),
		"builtin New": mustNew(t, Options{Token: "s3cret"}),
	} {
		for _, tc := range []struct {
			name string
			c    Credentials
			ok   bool
		}{
			{"MQTT, user name and token", Credentials{Conn: ConnMQTT, User: "any", Password: "s3cret"}, true},
			{"MQTT, token only", Credentials{Conn: ConnMQTT, Password: "s3cret", Token: "s3cret"}, true},
			{"MQTT over WebSocket", Credentials{Conn: ConnMQTTWS, User: "x", Password: "s3cret"}, true},
			{"MQTT, wrong token", Credentials{Conn: ConnMQTT, User: "any", Password: "nope"}, false},
			{"NATS auth_token", Credentials{Conn: ConnStandard, Token: "s3cret"}, true},
			{"NATS password is not a token", Credentials{Conn: ConnStandard, User: "any", Password: "s3cret"}, false},
		} {
			t.Run(name+"/"+tc.name, func(t *testing.T) {
				_, ok, err := a.Authenticate(ctx, &tc.c)
				require.NoError(t, err)
				require.Equal(t, tc.ok, ok)
			})
		}
	}
}
