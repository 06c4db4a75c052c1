package auth

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/bcrypt"
)

func mustNew(t *testing.T, o Options) Authenticator {
	t.Helper()
	a, err := New(o)
	require.NoError(t, err)
	require.NotNil(t, a)
	return a
}

func TestNewZeroOptionsIsNoAuth(t *testing.T) {
	a, err := New(Options{})
	require.NoError(t, err)
	require.Nil(t, a)
}

func TestNewConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
	}{
		{"duplicate user", Options{Users: []User{{Name: "a"}, {Name: "a"}}}},
		{"bad nkey", Options{Users: []User{{NKey: "SUAXYZ"}}}},
		{"bad bcrypt", Options{Users: []User{{Name: "a", Password: "$2a$10$short"}}}},
		{"no_auth_user unknown", Options{Users: []User{{Name: "a"}}, NoAuthUser: "b"}},
		{"no_auth_user without users", Options{Token: "x", NoAuthUser: "b"}},
		{"bad permission subject", Options{Users: []User{{Name: "a", Perms: &Permissions{Publish: &SubjectPermission{Allow: []string{"a..b"}}}}}}},
		{"empty user", Options{Users: []User{{Password: "x"}}}},
		{"duplicate api key", Options{Users: []User{{Name: "a", APIKey: "k"}, {Name: "b", APIKey: "k"}}}},
		{"map with no users", Options{TLSMap: true}},
		{"preload without operator", Options{ResolverPreload: map[string]string{"A": "x"}}},
		{"resolver URL", Options{Operators: []string{"x"}, Resolver: "URL(http://x)"}},
		{"jwt without keys", Options{ExternalJWT: &ExternalJWT{}}},
		{"jwt bad alg", Options{ExternalJWT: &ExternalJWT{Keys: []JWTKey{{Alg: "none", Secret: "x"}}}}},
		{"jwt HS256 no secret", Options{ExternalJWT: &ExternalJWT{Keys: []JWTKey{{Alg: "HS256"}}}}},
		{"jwt RS256 no file", Options{ExternalJWT: &ExternalJWT{Keys: []JWTKey{{Alg: "RS256", PublicKeyFile: "/nonexistent.pem"}}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.o)
			require.ErrorIs(t, err, ErrConfig)
		})
	}
}

func TestWarningsNamePlainSecretsOnly(t *testing.T) {
	h, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	ws := Warnings(Options{Users: []User{{Name: "plain", Password: "hunter2"}, {Name: "hashed", Password: string(h)}}, Token: "tok"})
	require.Len(t, ws, 2)
	require.Contains(t, ws[0], `"plain"`)
	for _, w := range ws {
		require.NotContains(t, w, "hunter2")
		require.NotContains(t, w, "tok\"")
	}
}

func TestAPIKey(t *testing.T) {
	a := mustNew(t, Options{Users: []User{
		{Name: "svc", APIKey: "k-123", Perms: &Permissions{Publish: &SubjectPermission{Allow: []string{"svc.>"}}}},
		{Name: "both", Password: "pw", APIKey: "k-456"},
		{APIKey: "k-789"},
	}})
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		c    Credentials
		want string
	}{
		{"api key", Credentials{APIKey: "k-123"}, "svc"},
		{"api key of a user with a password", Credentials{APIKey: "k-456"}, "both"},
		{"user with only an api key", Credentials{APIKey: "k-789"}, ""},
		{"wrong key", Credentials{APIKey: "k-12"}, "-"},
		{"api-key user has no password login", Credentials{User: "svc"}, "-"},
		{"password still works", Credentials{User: "both", Password: "pw"}, "both"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, ok, err := a.Authenticate(ctx, &tc.c)
			require.NoError(t, err)
			if tc.want == "-" {
				require.False(t, ok)
				return
			}
			require.True(t, ok)
			require.Equal(t, tc.want, id.Name)
		})
	}
}

func TestChainAndNonce(t *testing.T) {
	refuse := AuthenticatorFunc(func(context.Context, *Credentials) (*Identity, bool, error) { return nil, false, nil })
	accept := AuthenticatorFunc(func(context.Context, *Credentials) (*Identity, bool, error) {
		return &Identity{Name: "x"}, true, nil
	})
	id, ok, err := Chain(nil, refuse, accept).Authenticate(context.Background(), &Credentials{})
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "x", id.Name)
	require.False(t, NonceRequired(Chain(refuse, accept)))
	nk := mustNew(t, Options{Users: []User{{NKey: "UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4"}}})
	require.True(t, NonceRequired(Chain(refuse, nk)))
	require.False(t, NonceRequired(mustNew(t, Options{Token: "t"})))
}

func TestPermissions(t *testing.T) {
	p := &Permissions{
		Publish:   &SubjectPermission{Allow: []string{"a.>"}, Deny: []string{"a.secret"}},
		Subscribe: &SubjectPermission{Allow: []string{"s.*", "q.> grp.*", "q.x exact"}, Deny: []string{"s.no", "q.y grp.bad"}},
	}
	for _, tc := range []struct {
		subj, queue string
		pub, sub    bool
	}{
		{"a.b", "", true, false},
		{"a.secret", "", false, false},
		{"b", "", false, false},
		{"s.x", "", false, true},
		{"s.*", "", false, true},
		{"s.>", "", false, false},
		{"s.no", "", false, false},
		{"q.x", "", false, false},
		{"q.x", "grp.1", false, true},
		{"q.x", "exact", false, true},
		{"q.x", "other", false, false},
		{"q.y", "grp.bad", false, false},
		{"q.y", "grp.ok", false, true},
	} {
		require.Equal(t, tc.pub, p.CanPublish([]byte(tc.subj)), "publish %s", tc.subj)
		var q []byte
		if tc.queue != "" {
			q = []byte(tc.queue)
		}
		require.Equal(t, tc.sub, p.CanSubscribe([]byte(tc.subj), q), "subscribe %s %s", tc.subj, tc.queue)
	}
	resp := &Permissions{AllowResponses: &ResponsePermission{}}
	require.False(t, resp.CanPublish([]byte("x")), "allow_responses without a publish allow list turns the blanket allow off")
	require.Equal(t, &ResponsePermission{Max: DefaultResponseMax, Expires: DefaultResponseExpires}, resp.ResponseLimits())
	var none *Permissions
	require.True(t, none.CanPublish([]byte("x")))
	require.True(t, none.CanSubscribe([]byte(">"), nil))
}

func TestParseDN(t *testing.T) {
	d := parseDN(`CN=alice, OU=eng+O=acme\, inc,DC=example`)
	require.Equal(t, dn{{{"CN", "alice"}}, {{"OU", "eng"}, {"O", "acme, inc"}}, {{"DC", "example"}}}, d)
	require.Nil(t, parseDN("alice"))
	require.True(t, parseDN("CN=a,O=b").sameRDNs(parseDN("o=b,cn=a")))
	require.False(t, parseDN("CN=a,O=b").equal(parseDN("O=b,CN=a")))
}
