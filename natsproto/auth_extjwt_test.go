package natsproto_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
	"time"

	gjwt "github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/auth"
	"github.com/busbar/busbar/broker"
)

// extKey is one algorithm's signing key, and a second key of the same
// kind for bad signatures.
type extKey struct {
	alg        string
	method     gjwt.SigningMethod
	sign, evil any
	cfg        auth.JWTKey
}

func writePublicKey(t *testing.T, pub crypto.PublicKey) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	require.NoError(t, err)
	p := filepath.Join(t.TempDir(), "pub.pem")
	require.NoError(t, os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600))
	return p
}

func extKeys(t *testing.T) []extKey {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsaEvil, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecEvil, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	edPub, edKey, _ := ed25519.GenerateKey(rand.Reader)
	_, edEvil, _ := ed25519.GenerateKey(rand.Reader)
	return []extKey{
		{"HS256", gjwt.SigningMethodHS256, []byte("hmac-secret-0123456789"), []byte("other-secret"), auth.JWTKey{Alg: "HS256", Secret: "hmac-secret-0123456789"}},
		{"RS256", gjwt.SigningMethodRS256, rsaKey, rsaEvil, auth.JWTKey{Alg: "RS256", PublicKeyFile: writePublicKey(t, &rsaKey.PublicKey)}},
		{"ES256", gjwt.SigningMethodES256, ecKey, ecEvil, auth.JWTKey{Alg: "ES256", PublicKeyFile: writePublicKey(t, &ecKey.PublicKey)}},
		{"EdDSA", gjwt.SigningMethodEdDSA, edKey, edEvil, auth.JWTKey{Alg: "EdDSA", PublicKeyFile: writePublicKey(t, edPub)}},
	}
}

func signJWT(t *testing.T, m gjwt.SigningMethod, key any, claims gjwt.MapClaims) string {
	t.Helper()
	tok, err := gjwt.NewWithClaims(m, claims).SignedString(key)
	require.NoError(t, err)
	return tok
}

func TestAuthExternalJWT(t *testing.T) {
	for _, k := range extKeys(t) {
		t.Run(k.alg, func(t *testing.T) {
			s := startAuth(t, auth.Options{ExternalJWT: &auth.ExternalJWT{
				Keys: []auth.JWTKey{k.cfg}, Issuer: "https://idp.example", Audience: "busbar",
			}}, broker.Options{})
			claims := func(edit func(gjwt.MapClaims)) gjwt.MapClaims {
				c := gjwt.MapClaims{"sub": "alice", "iss": "https://idp.example", "aud": "busbar",
					"exp": time.Now().Add(time.Hour).Unix()}
				if edit != nil {
					edit(c)
				}
				return c
			}
			for _, tc := range []struct {
				name string
				tok  string
				ok   bool
			}{
				{"valid", signJWT(t, k.method, k.sign, claims(nil)), true},
				{"expired", signJWT(t, k.method, k.sign, claims(func(c gjwt.MapClaims) { c["exp"] = time.Now().Add(-time.Minute).Unix() })), false},
				{"not yet valid", signJWT(t, k.method, k.sign, claims(func(c gjwt.MapClaims) { c["nbf"] = time.Now().Add(time.Hour).Unix() })), false},
				{"wrong issuer", signJWT(t, k.method, k.sign, claims(func(c gjwt.MapClaims) { c["iss"] = "https://evil.example" })), false},
				{"wrong audience", signJWT(t, k.method, k.sign, claims(func(c gjwt.MapClaims) { c["aud"] = "other" })), false},
				{"bad signature", signJWT(t, k.method, k.evil, claims(nil)), false},
				{"no user claim", signJWT(t, k.method, k.sign, claims(func(c gjwt.MapClaims) { delete(c, "sub") })), false},
				{"wrong alg", wrongAlg(t, k, claims(nil)), false},
			} {
				t.Run(tc.name, func(t *testing.T) {
					nc, err := connect(t, s, nats.Token(tc.tok))
					if !tc.ok {
						require.ErrorIs(t, err, nats.ErrAuthorization)
						return
					}
					require.NoError(t, err)
					require.NoError(t, nc.Flush())
				})
			}
			require.Equal(t, "PONG", rawConnect(t, s, `{"jwt":"`+signJWT(t, k.method, k.sign, claims(nil))+`"}`), "as the CONNECT jwt")
		})
	}
}

// wrongAlg signs a token with an algorithm other than the one k is
// pinned to; for the asymmetric keys it is the classic confusion: HS256
// with the public key file's bytes as the HMAC secret.
func wrongAlg(t *testing.T, k extKey, c gjwt.MapClaims) string {
	if k.alg == "HS256" {
		ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		return signJWT(t, gjwt.SigningMethodES256, ec, c)
	}
	pemBytes, err := os.ReadFile(k.cfg.PublicKeyFile)
	require.NoError(t, err)
	return signJWT(t, gjwt.SigningMethodHS256, pemBytes, c)
}

func TestAuthExternalJWTUserAndPermissionsClaims(t *testing.T) {
	secret := "another-hmac-secret"
	o := auth.Options{
		Users: []auth.User{{Name: "alice", Perms: &auth.Permissions{Publish: &auth.SubjectPermission{Allow: []string{"alice.>"}}}}},
		ExternalJWT: &auth.ExternalJWT{
			Keys: []auth.JWTKey{{Alg: "HS256", Secret: secret}}, UserClaim: "preferred_username", PermissionsClaim: "nats",
		},
	}
	s := startAuth(t, o, broker.Options{})
	check := func(claims gjwt.MapClaims, okSubj, deniedSubj string) {
		t.Helper()
		errs := make(chan error, 4)
		tok := signJWT(t, gjwt.SigningMethodHS256, []byte(secret), claims)
		nc, err := connect(t, s, nats.Token(tok), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))
		require.NoError(t, err)
		require.NoError(t, nc.Publish(okSubj, nil))
		require.NoError(t, nc.Publish(deniedSubj, nil))
		require.NoError(t, nc.Flush())
		select {
		case err := <-errs:
			require.ErrorContains(t, err, `Permissions Violation for Publish to "`+deniedSubj+`"`)
		case <-time.After(5 * time.Second):
			t.Fatal("no violation")
		}
		require.Empty(t, errs)
	}
	// user_claim selects the configured user whose permissions apply.
	check(gjwt.MapClaims{"sub": "ignored", "preferred_username": "alice"}, "alice.x", "bob.x")
	// permissions_claim carries the permissions in the token itself.
	check(gjwt.MapClaims{"preferred_username": "alice", "nats": map[string]any{
		"publish": map[string]any{"allow": []string{"claims.>"}, "deny": []string{"claims.secret"}},
	}}, "claims.x", "claims.secret")
	require.Equal(t, authViolation, rawConnect(t, s, `{"auth_token":"`+signJWT(t, gjwt.SigningMethodHS256, []byte(secret), gjwt.MapClaims{"sub": "alice"})+`"}`),
		"the user claim is missing")
}
