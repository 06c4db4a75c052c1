package auth

import (
	"log/slog"
	"time"
)

// User is one entry of `authorization { users [...] }` (or the single
// user/password of `authorization {}` and --user/--pass).
type User struct {
	Name      string // user
	Password  string // plain text, or bcrypt ($2a$, $2b$, $2y$)
	NKey      string // public user NKEY ("U..."): signature over the INFO nonce
	APIKey    string // (busbar) key presented at a WebSocket handshake
	Account   string
	Perms     *Permissions // nil: the authorization block's default permissions, else all
	ConnTypes ConnTypes    // allowed_connection_types; empty: all
	MaxConns  int          // (busbar) per-user connection limit; 0: none
}

// ResponsePermission is `allow_responses`: a subscriber may publish to the
// reply subjects of requests it received, at most Max times each
// (0: 1) within Expires (0: 2 minutes, nats-server's defaults).
type ResponsePermission struct {
	Max     int
	Expires time.Duration
}

// ExternalJWT configures `authorization { jwt { ... } }` (busbar): tokens
// from an outside identity provider.
type ExternalJWT struct {
	Keys             []JWTKey
	Issuer           string
	Audience         string
	UserClaim        string // default "sub"
	PermissionsClaim string // optional
}

// JWTKey is one verification key, its algorithm pinned.
type JWTKey struct {
	Alg           string // HS256, RS256, ES256, EdDSA
	Secret        string // raw HMAC secret
	Base64Secret  string
	PublicKeyFile string
}

// Options is everything authentication and authorization is configured
// from: the `authorization {}` block, operator mode, TLS mapping, and
// no_auth_user. The zero value means no authentication.
type Options struct {
	Users       []User
	Token       string // plain or bcrypt
	NoAuthUser  string // connections with no credentials act as this user
	Timeout     time.Duration
	DefaultPerm *Permissions // authorization { permissions } for users without their own

	// NATS JWT operator mode.
	Operators       []string          // operator JWTs (contents, not paths)
	Resolver        string            // "MEMORY"
	ResolverPreload map[string]string // account public key → account JWT

	// TLSMap (tls { verify_and_map }): the client certificate names the
	// user on every connection type; TLSMapConns: on these types only
	// (config: the listeners whose tls {} says verify_and_map).
	TLSMap      bool
	TLSMapConns ConnTypes
	ExternalJWT *ExternalJWT

	// NoAuthUsers overrides NoAuthUser per connection type (websocket {
	// no_auth_user } for WEBSOCKET; mqtt { no_auth_user } for MQTT and
	// MQTT_WS).
	NoAuthUsers map[ConnType]string
	// Logger receives start-up warnings (plain-text passwords) and, at
	// debug level, why a connection was refused. nil: discard. Secrets
	// never reach it.
	Logger *slog.Logger
}
