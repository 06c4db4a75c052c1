package auth

import (
	"context"
	"strings"
	"testing"
	"time"

	gjwt "github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
)

// FuzzCredentials drives every parsing surface of the built-in
// Authenticator (user JWT decoding, external JWT parsing and its
// permissions claim, NKEY and signature handling, DN parsing) with
// arbitrary input. Nothing may panic, and junk must never be accepted.
func FuzzCredentials(f *testing.F) {
	opKP, _ := nkeys.CreateOperator()
	opPub, _ := opKP.PublicKey()
	opJWT, _ := jwt.NewOperatorClaims(opPub).Encode(opKP)
	accKP, _ := nkeys.CreateAccount()
	accPub, _ := accKP.PublicKey()
	accJWT, _ := jwt.NewAccountClaims(accPub).Encode(opKP)
	ukp, _ := nkeys.CreateUser()
	upub, _ := ukp.PublicKey()
	userJWT, _ := jwt.NewUserClaims(upub).Encode(accKP)
	ext, _ := gjwt.NewWithClaims(gjwt.SigningMethodHS256, gjwt.MapClaims{
		"sub": "alice", "exp": time.Now().Add(time.Hour).Unix(),
		"perms": map[string]any{"publish": []string{"a.>"}, "allow_responses": map[string]any{"max": 2, "expires": "1m"}},
	}).SignedString([]byte("fuzz-secret"))

	a, err := New(Options{
		Users:           []User{{Name: "alice", Password: "pw"}, {NKey: upub}, {Name: "CN=x,O=y", APIKey: "key"}},
		Token:           "tok",
		Operators:       []string{opJWT},
		ResolverPreload: map[string]string{accPub: accJWT},
		ExternalJWT:     &ExternalJWT{Keys: []JWTKey{{Alg: "HS256", Secret: "fuzz-secret"}}, PermissionsClaim: "perms"},
	})
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"", "pw", "tok", userJWT, ext, ext + "x", upub, "a.b.c", "eyJ.eyJ.", "CN=x,O=y", `CN=a\,b+OU=c\41;DC=x`} {
		f.Add(s, s, s, []byte(s))
	}
	// The external token's signature may differ in its last character's
	// unused bits (base64 is not decoded strictly): same signature.
	extBody := ext[:len(ext)-2]
	knownGood := func(c *Credentials) bool {
		for _, x := range []string{c.Token, c.JWT, c.Password} {
			if x == "tok" || (len(x) <= len(ext) && strings.HasPrefix(x, extBody)) {
				return true
			}
			// Any token the test's HMAC secret really signed (earlier runs'
			// corpus entries included) is good too.
			if _, err := gjwt.Parse(x, func(*gjwt.Token) (any, error) { return []byte("fuzz-secret"), nil },
				gjwt.WithValidMethods([]string{"HS256"})); err == nil {
				return true
			}
		}
		return (c.User == "alice" && c.Password == "pw") || c.APIKey == "key"
	}
	f.Fuzz(func(t *testing.T, user, secret, token string, sig []byte) {
		_ = parseDN(user)
		for _, c := range []*Credentials{
			{User: user, Password: secret},
			{Token: token},
			{JWT: token, Nonce: []byte("nonce"), Sig: sig},
			{NKey: user, Nonce: []byte("nonce"), Sig: sig},
			{Conn: ConnMQTT, User: user, Password: token},
			{APIKey: secret},
		} {
			id, ok, err := a.Authenticate(context.Background(), c)
			if err != nil {
				t.Fatalf("built-ins never fail to decide: %v", err)
			}
			if ok && id == nil {
				t.Fatal("accepted without an identity")
			}
			if ok && !knownGood(c) {
				t.Fatalf("accepted junk: %v", c)
			}
		}
	})
}
