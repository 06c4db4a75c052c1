package natsproto_test

import (
	"testing"
	"time"

	gjwt "github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/bcrypt"

	"github.com/busbar/busbar/auth"
	"github.com/busbar/busbar/broker"
)

// permsPair is a publisher and an inline subscriber, both with
// permissions: the publisher's allow and deny lists (per-connection
// verdict cache) and the subscriber's deny entry overlapping its wildcard
// subscription (a per-delivery check).
func permsPair(t testing.TB, withPerms bool) (*broker.Local, *int) {
	t.Helper()
	b, err := broker.New(broker.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Shutdown(t.Context()) })
	var pubID, subID *auth.Identity
	if withPerms {
		pubID = &auth.Identity{Name: "pub", Perms: &auth.Permissions{
			Publish: &auth.SubjectPermission{Allow: []string{"bench.>", "other.>"}, Deny: []string{"bench.secret", "bench.*.x"}},
		}}
		subID = &auth.Identity{Name: "sub", Perms: &auth.Permissions{
			Subscribe: &auth.SubjectPermission{Allow: []string{"bench.*"}, Deny: []string{"bench.secret"}},
		}}
	}
	pub, err := b.LocalAs("pub", pubID)
	require.NoError(t, err)
	sub, err := b.LocalAs("sub", subID)
	require.NoError(t, err)
	n := new(int)
	_, err = sub.SubscribeInline("bench.*", func(*broker.Message) { *n++ })
	require.NoError(t, err)
	return pub, n
}

// TestAuthPublishPathNoAllocation: authorization adds no allocation to a
// publish once the subject's verdict is cached.
func TestAuthPublishPathNoAllocation(t *testing.T) {
	pub, n := permsPair(t, true)
	payload := []byte("0123456789abcdef")
	require.NoError(t, pub.Publish("bench.x", payload)) // fills the verdict cache
	require.ErrorIs(t, pub.Publish("bench.secret", payload), broker.ErrPermPublish)
	allocs := testing.AllocsPerRun(1000, func() {
		if err := pub.Publish("bench.x", payload); err != nil {
			t.Fatal(err)
		}
		if err := pub.Publish("bench.secret", payload); err == nil {
			t.Fatal("denied subject published")
		}
	})
	require.Zero(t, allocs)
	require.Equal(t, 1002, *n)
}

// BenchmarkAuthPublish is an in-process publish to an inline subscriber,
// without and with permissions on both ends.
func BenchmarkAuthPublish(b *testing.B) {
	for _, perms := range []bool{false, true} {
		b.Run(map[bool]string{false: "no-perms", true: "perms"}[perms], func(b *testing.B) {
			pub, n := permsPair(b, perms)
			payload := make([]byte, 16)
			b.ReportAllocs()
			for b.Loop() {
				if err := pub.Publish("bench.x", payload); err != nil {
					b.Fatal(err)
				}
			}
			require.Equal(b, b.N, *n)
		})
	}
}

// BenchmarkAuthConnect is nats.go connect + authenticate + one round trip
// + close over TCP, per method. bcrypt at cost 10 (bcrypt.DefaultCost,
// what `nats server passwd` produces) and at cost 4 (the minimum).
func BenchmarkAuthConnect(b *testing.B) {
	nk, _ := nkeys.CreateUser()
	nkPub, _ := nk.PublicKey()
	op, _ := nkeys.CreateOperator()
	opPub, _ := op.PublicKey()
	opJWT, _ := jwt.NewOperatorClaims(opPub).Encode(op)
	acc, _ := nkeys.CreateAccount()
	accPub, _ := acc.PublicKey()
	accJWT, _ := jwt.NewAccountClaims(accPub).Encode(op)
	uk, _ := nkeys.CreateUser()
	ukPub, _ := uk.PublicKey()
	userJWT, _ := jwt.NewUserClaims(ukPub).Encode(acc)
	ext, _ := gjwt.NewWithClaims(gjwt.SigningMethodHS256, gjwt.MapClaims{"sub": "alice"}).SignedString([]byte("bench-secret"))
	h10, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.DefaultCost)
	h4, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	for _, tc := range []struct {
		name string
		o    auth.Options
		opt  nats.Option
	}{
		{"none", auth.Options{}, nats.Name("x")},
		{"password-plain", auth.Options{Users: []auth.User{{Name: "u", Password: "pw"}}}, nats.UserInfo("u", "pw")},
		{"password-bcrypt-cost4", auth.Options{Users: []auth.User{{Name: "u", Password: string(h4)}}}, nats.UserInfo("u", "pw")},
		{"password-bcrypt-cost10", auth.Options{Users: []auth.User{{Name: "u", Password: string(h10)}}}, nats.UserInfo("u", "pw")},
		{"token", auth.Options{Token: "tok"}, nats.Token("tok")},
		{"nkey", auth.Options{Users: []auth.User{{NKey: nkPub}}}, nats.Nkey(nkPub, nk.Sign)},
		{"operator-jwt", auth.Options{Operators: []string{opJWT}, ResolverPreload: map[string]string{accPub: accJWT}},
			nats.UserJWT(func() (string, error) { return userJWT, nil }, uk.Sign)},
		{"external-jwt-hs256", auth.Options{ExternalJWT: &auth.ExternalJWT{Keys: []auth.JWTKey{{Alg: "HS256", Secret: "bench-secret"}}}}, nats.Token(ext)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			s := startAuth(b, tc.o, broker.Options{Logger: discardLogger()})
			b.ReportAllocs()
			for b.Loop() {
				nc, err := nats.Connect(s.url(), tc.opt, nats.NoReconnect(), nats.Timeout(5*time.Second))
				if err != nil {
					b.Fatal(err)
				}
				if err := nc.Flush(); err != nil {
					b.Fatal(err)
				}
				nc.Close()
			}
		})
	}
}
