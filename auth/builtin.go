package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"strings"

	"github.com/nats-io/nkeys"
	"golang.org/x/crypto/bcrypt"
)

// NonceRequirer is implemented by an Authenticator that checks signatures
// over the server nonce (NKEY and NATS JWT users): transports send a nonce
// (NATS INFO nonce) when the broker's Authenticator requires one.
type NonceRequirer interface {
	NonceRequired() bool
}

// NonceRequired reports whether a, or any Authenticator it chains,
// requires a nonce.
func NonceRequired(a Authenticator) bool {
	n, ok := a.(NonceRequirer)
	return ok && n.NonceRequired()
}

// user is a configured User with what New derived from it.
type user struct {
	User
	bcrypt bool
	dn     dn // Name parsed as a distinguished name (TLS mapping), or nil
}

// builtin is the Authenticator New builds from Options.
type builtin struct {
	log      *slog.Logger
	users    map[string]*user   // by name
	nkeys    map[string]*user   // by public NKEY
	apiKeys  map[[32]byte]*user // by SHA-256 of the key
	ordered  []*user            // configuration order (TLS DN mapping)
	token    string
	tokenBC  bool
	defPerm  *Permissions
	noAuth   string
	noAuthBy map[ConnType]string
	tlsMap   bool      // every connection type maps certificates
	tlsMapBy ConnTypes // or these only
	op       *operatorMode
	ext      *externalJWT
}

// New builds the built-in Authenticator from o: users with plain or
// bcrypt passwords, the single token, NKEY users, API keys, TLS
// certificate mapping, NATS JWT operator mode and external JWTs, with
// no_auth_user for connections that present nothing. It returns nil (and
// no error) when o configures no authentication: a broker with a nil
// Authenticator lets everyone in. Plain-text passwords and tokens are
// warned about on o.Logger.
func New(o Options) (Authenticator, error) {
	b := &builtin{
		log: o.Logger, users: map[string]*user{}, nkeys: map[string]*user{},
		apiKeys: map[[32]byte]*user{}, token: o.Token, tokenBC: isBcrypt(o.Token),
		defPerm: o.DefaultPerm, noAuth: o.NoAuthUser, noAuthBy: o.NoAuthUsers, tlsMap: o.TLSMap,
		tlsMapBy: o.TLSMapConns,
	}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	if err := o.DefaultPerm.Validate(); err != nil {
		return nil, fmt.Errorf("default_permissions: %w", err)
	}
	for i := range o.Users {
		if err := b.addUser(o.Users[i]); err != nil {
			return nil, err
		}
	}
	if err := b.checkNoAuth(o); err != nil {
		return nil, err
	}
	if b.tokenBC {
		if _, err := bcrypt.Cost([]byte(o.Token)); err != nil {
			return nil, fmt.Errorf("%w: token: bad bcrypt hash: %w", ErrConfig, err)
		}
	}
	var err error
	if b.op, err = newOperatorMode(o); err != nil {
		return nil, err
	}
	if b.ext, err = newExternalJWT(o.ExternalJWT); err != nil {
		return nil, err
	}
	for _, w := range Warnings(o) {
		b.log.Warn(w)
	}
	if len(b.ordered) == 0 && b.token == "" && b.op == nil && b.ext == nil {
		if o.TLSMap || o.TLSMapConns != 0 {
			return nil, fmt.Errorf("%w: verify_and_map needs users to map certificates to", ErrConfig)
		}
		return nil, nil
	}
	return b, nil
}

// Warnings lists what New warns about at start-up: plain-text secrets in
// the configuration. Never the secrets themselves.
func Warnings(o Options) []string {
	var ws []string
	for _, u := range o.Users {
		if u.Password != "" && !isBcrypt(u.Password) {
			ws = append(ws, fmt.Sprintf("auth: user %q has a plain-text password; use a bcrypt hash", u.Name))
		}
	}
	if o.Token != "" && !isBcrypt(o.Token) {
		ws = append(ws, "auth: the authorization token is plain text; use a bcrypt hash")
	}
	return ws
}

func (b *builtin) addUser(cu User) error {
	u := &user{User: cu, bcrypt: isBcrypt(cu.Password)}
	name := u.Name
	if name == "" {
		name = u.NKey
	}
	switch {
	case name == "" && u.APIKey == "":
		return fmt.Errorf("%w: a user needs a name, an nkey or an api_key", ErrConfig)
	case u.NKey != "" && !nkeys.IsValidPublicUserKey(u.NKey):
		return fmt.Errorf("%w: user %q: nkey is not a public user NKEY", ErrConfig, name)
	case u.bcrypt:
		if _, err := bcrypt.Cost([]byte(u.Password)); err != nil {
			return fmt.Errorf("%w: user %q: bad bcrypt hash: %w", ErrConfig, name, err)
		}
	}
	if err := u.Perms.Validate(); err != nil {
		return fmt.Errorf("user %q: %w", name, err)
	}
	if u.Name != "" {
		if b.users[u.Name] != nil {
			return fmt.Errorf("%w: user %q is defined twice", ErrConfig, u.Name)
		}
		b.users[u.Name] = u
		u.dn = parseDN(u.Name)
	}
	if u.NKey != "" {
		if b.nkeys[u.NKey] != nil {
			return fmt.Errorf("%w: nkey %q is defined twice", ErrConfig, u.NKey)
		}
		b.nkeys[u.NKey] = u
	}
	if u.APIKey != "" {
		h := sha256.Sum256([]byte(u.APIKey))
		if b.apiKeys[h] != nil {
			return fmt.Errorf("%w: user %q: api_key is used twice", ErrConfig, name)
		}
		b.apiKeys[h] = u
	}
	b.ordered = append(b.ordered, u)
	return nil
}

func (b *builtin) checkNoAuth(o Options) error {
	names := []string{o.NoAuthUser}
	for _, n := range o.NoAuthUsers {
		names = append(names, n)
	}
	for _, n := range names {
		if n == "" {
			continue
		}
		if len(o.Operators) > 0 {
			return fmt.Errorf("%w: no_auth_user not compatible with Trusted Operator", ErrConfig)
		}
		if b.users[n] == nil && b.nkeys[n] == nil {
			return fmt.Errorf("%w: no_auth_user: %q not present as user or nkey in authorization block or account configuration", ErrConfig, n)
		}
	}
	return nil
}

// NonceRequired: NKEY users and operator mode sign the nonce.
func (b *builtin) NonceRequired() bool { return len(b.nkeys) > 0 || b.op != nil }

// identity is the Identity u logs in as.
func (b *builtin) identity(u *user) *Identity {
	name := u.Name
	if name == "" {
		name = u.NKey
	}
	perms := u.Perms
	if perms == nil {
		perms = b.defPerm
	}
	return &Identity{Name: name, Account: u.Account, Perms: perms, ConnTypes: u.ConnTypes, MaxConns: u.MaxConns}
}

// Authenticate tries the methods in nats-server's order: a NATS user JWT
// (operator mode), an NKEY, the client certificate (verify_and_map), an
// API key, no_auth_user for a connection that presents nothing, a user
// and password, the token, and last an external JWT. A credential that
// names a method decides it: a wrong NKEY signature is not retried as a
// password.
func (b *builtin) Authenticate(ctx context.Context, c *Credentials) (*Identity, bool, error) {
	if b.op != nil && isNATSJWT(c.JWT) {
		return b.op.authenticate(b, c)
	}
	if b.op != nil && c.Conn.isMQTT() && isNATSJWT(c.Password) {
		cc := *c
		cc.JWT, cc.Password = c.Password, ""
		return b.op.authenticate(b, &cc)
	}
	if c.NKey != "" {
		return b.nkey(c)
	}
	if b.mapsCerts(c.Conn) && c.TLS != nil && len(c.TLS.PeerCertificates) > 0 {
		return b.mapCert(c)
	}
	if c.APIKey != "" {
		return b.apiKey(c)
	}
	if c.empty() {
		return b.noAuthUser(c)
	}
	if c.User != "" {
		if id, ok := b.password(c); ok {
			return id, true, nil
		}
	}
	if tok := c.token(); tok != "" && b.token != "" && compare(b.token, b.tokenBC, tok) {
		return &Identity{Name: "token", Perms: b.defPerm}, true, nil
	}
	if b.ext != nil {
		return b.ext.authenticate(b, c)
	}
	b.log.Debug("auth: no built-in method accepted", "creds", c)
	return nil, false, nil
}

func (c ConnType) isMQTT() bool { return c == ConnMQTT || c == ConnMQTTWS }

// mapsCerts reports whether a client certificate on a connection of type
// t names its user.
func (b *builtin) mapsCerts(t ConnType) bool { return b.tlsMap || b.tlsMapBy.Has(t) }

// token is the token c presents. MQTT has no token field: its password
// carries the token, with or without a user name (nats-server's rule).
func (c *Credentials) token() string {
	if c.Token == "" && c.Conn.isMQTT() {
		return c.Password
	}
	return c.Token
}

// empty reports whether c carries no credential at all.
func (c *Credentials) empty() bool {
	return c.User == "" && c.Password == "" && c.Token == "" && c.JWT == "" && c.NKey == "" && c.APIKey == ""
}

func (b *builtin) noAuthUser(c *Credentials) (*Identity, bool, error) {
	name := b.noAuth
	if n, ok := b.noAuthBy[c.Conn]; ok && n != "" {
		name = n
	}
	if name == "" {
		return nil, false, nil
	}
	u := b.users[name]
	if u == nil {
		u = b.nkeys[name]
	}
	if u == nil {
		return nil, false, nil
	}
	return b.identity(u), true, nil
}

func (b *builtin) password(c *Credentials) (*Identity, bool) {
	u := b.users[c.User]
	if u == nil {
		return nil, false
	}
	if u.Password == "" {
		// No password: a certificate, NKEY or API key identity, never
		// one that a bare name logs in as (with certificate mapping on
		// any listener, on none).
		if u.NKey != "" || u.APIKey != "" || b.tlsMap || b.tlsMapBy != 0 || c.Password != "" {
			return nil, false
		}
		return b.identity(u), true
	}
	if !compare(u.Password, u.bcrypt, c.Password) {
		b.log.Debug("auth: wrong password", "user", c.User)
		return nil, false
	}
	return b.identity(u), true
}

func (b *builtin) apiKey(c *Credentials) (*Identity, bool, error) {
	u := b.apiKeys[sha256.Sum256([]byte(c.APIKey))]
	if u == nil || !equal(u.APIKey, c.APIKey) {
		b.log.Debug("auth: unknown api key", "creds", c)
		return nil, false, nil
	}
	return b.identity(u), true, nil
}

func (b *builtin) nkey(c *Credentials) (*Identity, bool, error) {
	u := b.nkeys[c.NKey]
	if u == nil {
		b.log.Debug("auth: unknown nkey", "nkey", c.NKey)
		return nil, false, nil
	}
	if !verifyNonce(c.NKey, c.Nonce, c.Sig) {
		b.log.Debug("auth: nkey signature not verified", "nkey", c.NKey)
		return nil, false, nil
	}
	return b.identity(u), true, nil
}

// verifyNonce checks sig as pub's Ed25519 signature over nonce.
func verifyNonce(pub string, nonce, sig []byte) bool {
	if len(nonce) == 0 || len(sig) == 0 {
		return false
	}
	kp, err := nkeys.FromPublicKey(pub)
	if err != nil {
		return false
	}
	return kp.Verify(nonce, sig) == nil
}

// isBcrypt reports whether s is a bcrypt hash ($2a$, $2b$, $2x$, $2y$).
func isBcrypt(s string) bool {
	return len(s) > 4 && s[0] == '$' && s[1] == '2' && strings.ContainsRune("abxy", rune(s[2])) && s[3] == '$'
}

// compare checks a presented secret against a configured one, bcrypt or
// plain (constant time).
func compare(configured string, isBC bool, presented string) bool {
	if isBC {
		return bcrypt.CompareHashAndPassword([]byte(configured), []byte(presented)) == nil
	}
	return equal(configured, presented)
}

// equal compares secrets in constant time (the length still shows).
func equal(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
