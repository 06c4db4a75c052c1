package auth

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
)

// operatorMode is NATS JWT decentralized auth: trusted operators, the
// accounts they signed (resolver MEMORY with resolver_preload), and user
// JWTs signed by an account or one of its signing keys.
type operatorMode struct {
	operators []*jwt.OperatorClaims
	accounts  map[string]*jwt.AccountClaims // by account public key
}

func newOperatorMode(o Options) (*operatorMode, error) {
	if len(o.Operators) == 0 {
		if len(o.ResolverPreload) > 0 {
			return nil, fmt.Errorf("%w: resolver_preload needs an operator", ErrConfig)
		}
		return nil, nil
	}
	switch strings.ToUpper(o.Resolver) {
	case "", "MEMORY", "MEM":
	default:
		return nil, fmt.Errorf("%w: resolver %q: only MEMORY is supported", ErrConfig, o.Resolver)
	}
	m := &operatorMode{accounts: map[string]*jwt.AccountClaims{}}
	for i, s := range o.Operators {
		oc, err := jwt.DecodeOperatorClaims(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("%w: operator %d: %w", ErrConfig, i+1, err)
		}
		m.operators = append(m.operators, oc)
	}
	for key, s := range o.ResolverPreload {
		ac, err := jwt.DecodeAccountClaims(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("%w: resolver_preload %s: %w", ErrConfig, key, err)
		}
		if ac.Subject != key {
			return nil, fmt.Errorf("%w: resolver_preload %s: the JWT is for account %s", ErrConfig, key, ac.Subject)
		}
		if !m.trusted(ac) {
			return nil, fmt.Errorf("%w: resolver_preload %s: account JWT not signed by a trusted operator", ErrConfig, key)
		}
		m.accounts[key] = ac
	}
	return m, nil
}

func (m *operatorMode) trusted(ac *jwt.AccountClaims) bool {
	for _, oc := range m.operators {
		if oc.DidSign(ac) {
			return true
		}
	}
	return false
}

// isNATSJWT reports whether s is shaped like a NATS JWT: three segments
// and a header naming NATS's algorithm (ed25519-nkey, or the older
// ed25519). Only the header is decoded; the claims are checked later.
func isNATSJWT(s string) bool {
	h, _, ok := strings.Cut(s, ".")
	if !ok || strings.Count(s, ".") != 2 || len(h) > 256 {
		return false
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(h, "="))
	if err != nil {
		return false
	}
	var hdr struct {
		Alg string `json:"alg"`
	}
	if json.Unmarshal(raw, &hdr) != nil {
		return false
	}
	return strings.EqualFold(hdr.Alg, jwt.AlgorithmNkey) || strings.EqualFold(hdr.Alg, "ed25519")
}

// authenticate checks a user JWT as nats-server does in operator mode; a
// refusal is final (ok=false), its reason logged at debug level.
func (m *operatorMode) authenticate(b *builtin, c *Credentials) (*Identity, bool, error) {
	id, why := m.check(c, time.Now())
	if why != "" {
		b.log.Debug("auth: user JWT refused: "+why, "creds", c)
		return nil, false, nil
	}
	return id, true, nil
}

func (m *operatorMode) check(c *Credentials, now time.Time) (*Identity, string) {
	uc, err := jwt.DecodeUserClaims(c.JWT)
	if err != nil {
		return nil, "not a valid user JWT"
	}
	vr := jwt.CreateValidationResults()
	uc.Validate(vr)
	if vr.IsBlocking(true) {
		return nil, "no longer valid (expired or not yet valid)"
	}
	accKey := uc.Issuer
	if uc.IssuerAccount != "" {
		accKey = uc.IssuerAccount
	}
	ac := m.accounts[accKey]
	if ac == nil {
		return nil, "unknown account " + accKey
	}
	if ac.Expires > 0 && now.Unix() >= ac.Expires {
		return nil, "account JWT expired"
	}
	if !ac.DidSign(uc) {
		return nil, "issuer is not the account or one of its signing keys"
	}
	perms := &uc.Permissions
	if scope, ok := ac.SigningKeys.GetScope(uc.Issuer); ok && scope != nil {
		us, isUser := scope.(*jwt.UserScope)
		if err := scope.ValidateScopedSigner(uc); err != nil || !isUser {
			return nil, "scoped signing key misused"
		}
		perms = &us.Template.Permissions
		uc.AllowedConnectionTypes = us.Template.AllowedConnectionTypes
		uc.Limits = us.Template.Limits
		uc.BearerToken = us.Template.BearerToken
	}
	if uc.BearerToken && ac.Limits.DisallowBearer {
		return nil, "account does not allow bearer tokens"
	}
	types, ok := jwtConnTypes(uc.AllowedConnectionTypes)
	if !ok || !types.Allows(c.Conn) {
		return nil, "connection type not allowed"
	}
	if !uc.BearerToken && !verifyNonce(uc.Subject, c.Nonce, c.Sig) {
		return nil, "nonce signature not verified"
	}
	if ac.IsClaimRevoked(uc) {
		return nil, "user revoked"
	}
	if !srcAllowed(uc.Src, c.RemoteAddr) {
		return nil, "source address not allowed"
	}
	until, inTimes := timesAllow(uc.UserLimits, now)
	if !inTimes {
		return nil, "outside connect times"
	}
	id := &Identity{Name: uc.Subject, Account: accKey, Perms: jwtPerms(perms), ConnTypes: types}
	if id.Perms == nil {
		id.Perms = jwtPerms(&ac.DefaultPermissions)
	}
	if uc.Expires > 0 {
		id.Expires = time.Unix(uc.Expires, 0)
	}
	if ac.Expires > 0 && (id.Expires.IsZero() || ac.Expires < id.Expires.Unix()) {
		id.Expires = time.Unix(ac.Expires, 0) // the account's JWT ends the session too
	}
	if !until.IsZero() && (id.Expires.IsZero() || until.Before(id.Expires)) {
		id.Expires = until
	}
	return id, ""
}

// jwtConnTypes maps claim connection types; unknown ones are skipped, and
// a list of only unknown ones allows nothing (nats-server).
func jwtConnTypes(list []string) (ConnTypes, bool) {
	var s ConnTypes
	for _, n := range list {
		if t, err := ParseConnType(n); err == nil {
			s = s.Add(t)
		}
	}
	return s, len(list) == 0 || s != 0
}

func jwtPerms(p *jwt.Permissions) *Permissions {
	if p == nil || (len(p.Pub.Allow)+len(p.Pub.Deny)+len(p.Sub.Allow)+len(p.Sub.Deny) == 0 && p.Resp == nil) {
		return nil
	}
	out := &Permissions{}
	if len(p.Pub.Allow)+len(p.Pub.Deny) > 0 {
		out.Publish = &SubjectPermission{Allow: p.Pub.Allow, Deny: p.Pub.Deny}
	}
	if len(p.Sub.Allow)+len(p.Sub.Deny) > 0 {
		out.Subscribe = &SubjectPermission{Allow: p.Sub.Allow, Deny: p.Sub.Deny}
	}
	if p.Resp != nil {
		out.AllowResponses = &ResponsePermission{Max: p.Resp.MaxMsgs, Expires: p.Resp.Expires}
	}
	return out
}

func srcAllowed(src jwt.CIDRList, addr net.Addr) bool {
	if len(src) == 0 {
		return true
	}
	if addr == nil {
		return false
	}
	host, _, err := net.SplitHostPort(addr.String())
	if err != nil {
		host = addr.String()
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return false
	}
	for _, cidr := range src {
		if _, n, err := net.ParseCIDR(cidr); err == nil && n.Contains(ip) {
			return true
		}
	}
	return false
}

// timesAllow checks `times` and returns when the current range ends (zero
// when there are no ranges), as nats-server's validateTimes.
func timesAllow(l jwt.UserLimits, now time.Time) (time.Time, bool) {
	if len(l.Times) == 0 {
		return time.Time{}, true
	}
	loc := time.Local
	if l.Locale != "" {
		var err error
		if loc, err = time.LoadLocation(l.Locale); err != nil {
			return time.Time{}, false
		}
	}
	now = now.In(loc)
	var best time.Time
	for _, r := range l.Times {
		s, err1 := time.ParseInLocation("15:04:05", r.Start, loc)
		e, err2 := time.ParseInLocation("15:04:05", r.End, loc)
		if err1 != nil || err2 != nil {
			return time.Time{}, false
		}
		y, mo, d := now.Date()
		start := time.Date(y, mo, d, s.Hour(), s.Minute(), s.Second(), 0, loc)
		end := time.Date(y, mo, d, e.Hour(), e.Minute(), e.Second(), 0, loc)
		var in bool
		switch {
		case start.Before(now) && end.After(now):
			in = true
		case start.After(end) && end.After(now): // crosses midnight, now after it
			in = true
		case start.After(end) && start.Before(now):
			end, in = end.AddDate(0, 0, 1), true
		}
		if in && end.After(best) {
			best = end
		}
	}
	return best, !best.IsZero()
}
