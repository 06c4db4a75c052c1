package natsproto_test

import (
	"context"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/auth"
)

// TestAuthSecretsNeverLogged runs the whole nats.go auth suite with every
// logger (broker and auth) at trace level into one buffer, plus a direct
// API-key run, and scans the output for every secret the suite used:
// passwords, tokens, bcrypt hashes, API keys, HMAC secrets, JWTs (NATS and
// external) and NKEY seeds.
func TestAuthSecretsNeverLogged(t *testing.T) {
	logSink.mu.Lock()
	logSink.buf.Reset()
	logSink.mu.Unlock()
	for name, f := range map[string]func(*testing.T){
		"users and tokens":  TestAuthUsersAndTokens,
		"wire":              TestAuthViolationOnTheWire,
		"nkey":              TestAuthNKey,
		"no_auth_user":      TestAuthNoAuthUser,
		"permissions":       TestAuthPermissionViolations,
		"allow_responses":   TestAuthAllowResponses,
		"connection types":  TestAuthAllowedConnectionTypes,
		"max connections":   TestAuthUserMaxConnections,
		"tls map":           TestAuthTLSVerifyAndMap,
		"operator":          TestAuthOperatorJWT,
		"external jwt":      TestAuthExternalJWT,
		"external claims":   TestAuthExternalJWTUserAndPermissionsClaims,
		"wildcard and deny": TestAuthWildcardSubscriptionSkipsDeniedSubjects,
	} {
		t.Run(name, f)
	}
	a, err := auth.New(auth.Options{Users: []auth.User{{Name: "svc", APIKey: "api-key-s3cr3t"}}, Logger: testLogger(t)})
	require.NoError(t, err)
	for _, k := range []string{"api-key-s3cr3t", "api-key-wrong-s3cr3t"} {
		_, _, _ = a.Authenticate(context.Background(), &auth.Credentials{APIKey: k, Password: "pw-s3cr3t", Token: "tok-s3cr3t"})
	}
	testLogger(t).Debug("credentials as a value", "creds", &auth.Credentials{User: "u", Password: "pw-s3cr3t", JWT: "eyJhbGciOi.x.y"})

	logSink.mu.Lock()
	out := logSink.buf.String()
	logSink.mu.Unlock()
	if testing.Verbose() {
		t.Logf("%d bytes of log, first lines:\n%.1500s", len(out), out)
	}
	require.Contains(t, out, "[REDACTED]", "the run logged credentials (redacted) at all")
	for _, secret := range []string{
		"alicepw", "bobpw", "s3cr3t-token", "bcrypt-token", "guestpw", "adminpw", "api-key-s3cr3t",
		"api-key-wrong-s3cr3t", "pw-s3cr3t", "tok-s3cr3t", "hmac-secret-0123456789", "another-hmac-secret", "app-token",
		`"nope"`, "alicepw\"", "$2a$", "eyJ",
	} {
		require.NotContains(t, out, secret)
	}
	for _, re := range []*regexp.Regexp{
		regexp.MustCompile(`\bS[UAO][A-Z2-7]{56}\b`),                                     // NKEY seeds (58 characters; a 52-character JWT id is not one)
		regexp.MustCompile(`[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}`), // any JWT
	} {
		require.Empty(t, re.FindAllString(out, 3), re.String())
	}
}
