package natsproto_test

import (
	"testing"
	"time"

	gjwt "github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/auth"
	"github.com/busbar/busbar/broker"
)

// operatorSetup is an operator, one account it signed (with a signing
// key), and helpers to mint users: all generated in the test.
type operatorSetup struct {
	t          *testing.T
	op, acc    nkeys.KeyPair
	signer     nkeys.KeyPair // account signing key
	accPub     string
	opJWT      string
	accClaims  *jwt.AccountClaims
	otherOp    nkeys.KeyPair
	otherAccKP nkeys.KeyPair
}

func newOperatorSetup(t *testing.T) *operatorSetup {
	o := &operatorSetup{t: t}
	o.op, _ = nkeys.CreateOperator()
	o.acc, _ = nkeys.CreateAccount()
	o.signer, _ = nkeys.CreateAccount()
	o.otherOp, _ = nkeys.CreateOperator()
	o.otherAccKP, _ = nkeys.CreateAccount()
	opPub, _ := o.op.PublicKey()
	oc := jwt.NewOperatorClaims(opPub)
	oc.Name = "test-op"
	var err error
	o.opJWT, err = oc.Encode(o.op)
	require.NoError(t, err)
	o.accPub, _ = o.acc.PublicKey()
	o.accClaims = jwt.NewAccountClaims(o.accPub)
	signerPub, _ := o.signer.PublicKey()
	o.accClaims.SigningKeys.Add(signerPub)
	return o
}

func (o *operatorSetup) options() auth.Options {
	accJWT, err := o.accClaims.Encode(o.op)
	require.NoError(o.t, err)
	return auth.Options{Operators: []string{o.opJWT}, Resolver: "MEMORY", ResolverPreload: map[string]string{o.accPub: accJWT}}
}

// user mints a user JWT; edit adjusts the claims, signer signs them.
func (o *operatorSetup) user(signer nkeys.KeyPair, edit func(*jwt.UserClaims)) (string, nkeys.KeyPair) {
	ukp, _ := nkeys.CreateUser()
	upub, _ := ukp.PublicKey()
	uc := jwt.NewUserClaims(upub)
	if sp, _ := signer.PublicKey(); sp != o.accPub {
		uc.IssuerAccount = o.accPub
	}
	if edit != nil {
		edit(uc)
	}
	tok, err := uc.Encode(signer)
	require.NoError(o.t, err)
	return tok, ukp
}

func jwtOpt(tok string, kp nkeys.KeyPair) nats.Option {
	return nats.UserJWT(func() (string, error) { return tok, nil }, kp.Sign)
}

func TestAuthOperatorJWT(t *testing.T) {
	o := newOperatorSetup(t)
	revokedTok, revokedKP := o.user(o.acc, func(uc *jwt.UserClaims) { uc.IssuedAt = time.Now().Add(-time.Hour).Unix() })
	rc, _ := jwt.DecodeUserClaims(revokedTok)
	o.accClaims.RevokeAt(rc.Subject, time.Now())
	s := startAuth(t, o.options(), broker.Options{})

	otherUser := func() (string, nkeys.KeyPair) { // signed by an account nobody trusts
		ukp, _ := nkeys.CreateUser()
		upub, _ := ukp.PublicKey()
		tok, _ := jwt.NewUserClaims(upub).Encode(o.otherAccKP)
		return tok, ukp
	}
	wrongKey, _ := nkeys.CreateUser()
	for _, tc := range []struct {
		name string
		mint func() (string, nkeys.KeyPair)
		sign func(kp nkeys.KeyPair) nats.SignatureHandler
		ok   bool
	}{
		{"signed by the account", func() (string, nkeys.KeyPair) { return o.user(o.acc, nil) }, nil, true},
		{"signed by a signing key", func() (string, nkeys.KeyPair) { return o.user(o.signer, nil) }, nil, true},
		{"bearer token, no signature needed", func() (string, nkeys.KeyPair) {
			return o.user(o.acc, func(uc *jwt.UserClaims) { uc.BearerToken = true })
		}, func(nkeys.KeyPair) nats.SignatureHandler { return wrongKey.Sign }, true},
		{"nonce signed by another key", func() (string, nkeys.KeyPair) { return o.user(o.acc, nil) },
			func(nkeys.KeyPair) nats.SignatureHandler { return wrongKey.Sign }, false},
		{"expired", func() (string, nkeys.KeyPair) {
			return o.user(o.acc, func(uc *jwt.UserClaims) { uc.Expires = time.Now().Add(-time.Minute).Unix() })
		}, nil, false},
		{"not yet valid", func() (string, nkeys.KeyPair) {
			return o.user(o.acc, func(uc *jwt.UserClaims) { uc.NotBefore = time.Now().Add(time.Hour).Unix() })
		}, nil, false},
		{"revoked", func() (string, nkeys.KeyPair) { return revokedTok, revokedKP }, nil, false},
		{"unknown account", otherUser, nil, false},
		{"src allows 127.0.0.1", func() (string, nkeys.KeyPair) {
			return o.user(o.acc, func(uc *jwt.UserClaims) { uc.Src.Set("127.0.0.0/8") })
		}, nil, true},
		{"src elsewhere", func() (string, nkeys.KeyPair) {
			return o.user(o.acc, func(uc *jwt.UserClaims) { uc.Src.Set("10.0.0.0/8") })
		}, nil, false},
		{"inside connect times", func() (string, nkeys.KeyPair) {
			return o.user(o.acc, func(uc *jwt.UserClaims) {
				uc.Locale = "UTC"
				uc.Times = []jwt.TimeRange{{Start: "00:00:00", End: "23:59:59"}}
			})
		}, nil, time.Now().UTC().Format("15:04:05") < "23:59:58"},
		{"outside connect times", func() (string, nkeys.KeyPair) {
			now := time.Now().UTC()
			return o.user(o.acc, func(uc *jwt.UserClaims) {
				uc.Locale = "UTC"
				uc.Times = []jwt.TimeRange{{Start: now.Add(2 * time.Hour).Format("15:04:05"), End: now.Add(3 * time.Hour).Format("15:04:05")}}
			})
		}, nil, false},
		{"connection type allowed", func() (string, nkeys.KeyPair) {
			return o.user(o.acc, func(uc *jwt.UserClaims) { uc.AllowedConnectionTypes.Add(jwt.ConnectionTypeStandard) })
		}, nil, true},
		{"connection type refused", func() (string, nkeys.KeyPair) {
			return o.user(o.acc, func(uc *jwt.UserClaims) { uc.AllowedConnectionTypes.Add(jwt.ConnectionTypeWebsocket) })
		}, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok, kp := tc.mint()
			sign := kp.Sign
			if tc.sign != nil {
				sign = tc.sign(kp)
			}
			nc, err := connect(t, s, nats.UserJWT(func() (string, error) { return tok, nil }, sign))
			if !tc.ok {
				require.ErrorIs(t, err, nats.ErrAuthorization)
				return
			}
			require.NoError(t, err)
			require.NoError(t, nc.Flush())
		})
	}
}

func TestAuthOperatorJWTPermissionsAndExpiry(t *testing.T) {
	o := newOperatorSetup(t)
	s := startAuth(t, o.options(), broker.Options{})
	tok, kp := o.user(o.acc, func(uc *jwt.UserClaims) {
		uc.Pub.Allow.Add("allowed.>")
		uc.Expires = time.Now().Add(2 * time.Second).Unix()
	})
	errs := make(chan error, 4)
	closed := make(chan struct{})
	nc, err := connect(t, s, jwtOpt(tok, kp),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }),
		nats.ClosedHandler(func(*nats.Conn) { close(closed) }))
	require.NoError(t, err)
	require.NoError(t, nc.Publish("denied", nil))
	select {
	case err := <-errs:
		require.ErrorContains(t, err, `Permissions Violation for Publish to "denied"`)
	case <-time.After(5 * time.Second):
		t.Fatal("no violation")
	}
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("not disconnected at expiry")
	}
	select {
	case err := <-errs:
		require.ErrorIs(t, err, nats.ErrAuthExpired)
	case <-time.After(time.Second):
		t.Fatalf("expiry not reported: last error %v", nc.LastError())
	}
}

func TestAuthOperatorConfigErrors(t *testing.T) {
	o := newOperatorSetup(t)
	good := o.options()
	untrusted, _ := o.accClaims.Encode(o.otherOp)
	for _, tc := range []struct {
		name string
		o    auth.Options
	}{
		{"not an operator JWT", auth.Options{Operators: []string{"garbage"}}},
		{"account signed by an untrusted operator", auth.Options{Operators: good.Operators, ResolverPreload: map[string]string{o.accPub: untrusted}}},
		{"preload key mismatch", auth.Options{Operators: good.Operators, ResolverPreload: map[string]string{"AXXX": good.ResolverPreload[o.accPub]}}},
		{"no_auth_user with operator", auth.Options{Operators: good.Operators, Users: []auth.User{{Name: "a"}}, NoAuthUser: "a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := auth.New(tc.o)
			require.ErrorIs(t, err, auth.ErrConfig)
		})
	}
}

// TestAuthOperatorBesideOtherMethods: operator mode decides NATS user JWTs
// only; an external JWT in the same CONNECT field and configured users
// still work.
func TestAuthOperatorBesideOtherMethods(t *testing.T) {
	o := newOperatorSetup(t)
	opts := o.options()
	opts.Users = []auth.User{{Name: "local", Password: "pw"}}
	opts.ExternalJWT = &auth.ExternalJWT{Keys: []auth.JWTKey{{Alg: "HS256", Secret: "idp-secret"}}}
	s := startAuth(t, opts, broker.Options{})
	tok, kp := o.user(o.acc, nil)
	_, err := connect(t, s, jwtOpt(tok, kp))
	require.NoError(t, err)
	_, err = connect(t, s, nats.UserInfo("local", "pw"))
	require.NoError(t, err)
	ext := signJWT(t, gjwt.SigningMethodHS256, []byte("idp-secret"), gjwt.MapClaims{"sub": "carol"})
	require.Equal(t, "PONG", rawConnect(t, s, `{"jwt":"`+ext+`"}`))
	require.Equal(t, authViolation, rawConnect(t, s, `{"jwt":"`+tok+`"}`), "a NATS user JWT without its nonce signature")
}
