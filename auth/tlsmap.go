package auth

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"strings"
)

// mapCert maps the client certificate to a configured user (tls {
// verify_and_map }), in nats-server's order: email SANs, DNS SANs, URI
// SANs, the subject as an RFC 2253 distinguished name (attribute order
// free), the subject string with its domain components, then the subject
// string. The listener has already verified the certificate. No password
// is asked for.
func (b *builtin) mapCert(c *Credentials) (*Identity, bool, error) {
	cert := c.TLS.PeerCertificates[0]
	lookup := func(name string) *user {
		u := b.users[name]
		if u == nil || !u.ConnTypes.Allows(c.Conn) {
			return nil
		}
		return u
	}
	for _, names := range [][]string{cert.EmailAddresses, cert.DNSNames, uriStrings(cert)} {
		for _, n := range names {
			if u := lookup(n); u != nil {
				return b.identity(u), true, nil
			}
		}
	}
	if certDN := certSubjectDN(cert); certDN != nil {
		var loose *user
		for _, u := range b.ordered {
			if u.dn == nil || !u.ConnTypes.Allows(c.Conn) {
				continue
			}
			if u.dn.equal(certDN) {
				return b.identity(u), true, nil
			}
			if loose == nil && u.dn.sameRDNs(certDN) {
				loose = u
			}
		}
		if loose != nil {
			return b.identity(loose), true, nil
		}
	}
	rdn := cert.Subject.ToRDNSequence().String()
	if dcs := domainComponents(cert); dcs != "" {
		if u := lookup(rdn + "," + dcs); u != nil {
			return b.identity(u), true, nil
		}
	}
	if u := lookup(rdn); u != nil {
		return b.identity(u), true, nil
	}
	b.log.Debug("auth: client certificate maps to no user", "subject", rdn)
	return nil, false, nil
}

func uriStrings(cert *x509.Certificate) []string {
	out := make([]string, 0, len(cert.URIs))
	for _, u := range cert.URIs {
		out = append(out, u.String())
	}
	return out
}

var oidDC = asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 25}

func domainComponents(cert *x509.Certificate) string {
	var rdns pkix.RDNSequence
	if _, err := asn1.Unmarshal(cert.RawSubject, &rdns); err != nil {
		return ""
	}
	var dcs []string
	for _, rdn := range rdns {
		for _, atv := range rdn {
			if v, ok := atv.Value.(string); ok && atv.Type.Equal(oidDC) {
				dcs = append(dcs, "DC="+v)
			}
		}
	}
	return strings.Join(dcs, ",")
}

// attr is one attribute type and value of a distinguished name; the type
// in upper case short form (CN, OU, ...) or dotted OID.
type attr struct{ typ, val string }

// dn is a distinguished name in RFC 2253 order (most specific first), each
// RDN a set of attributes.
type dn [][]attr

var attrNames = map[string]string{
	"2.5.4.3": "CN", "2.5.4.6": "C", "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.9": "STREET",
	"2.5.4.10": "O", "2.5.4.11": "OU", "2.5.4.5": "SERIALNUMBER", "2.5.4.17": "POSTALCODE",
	"0.9.2342.19200300.100.1.25": "DC", "0.9.2342.19200300.100.1.1": "UID",
	"1.2.840.113549.1.9.1": "EMAILADDRESS",
}

var attrAliases = map[string]string{"E": "EMAILADDRESS", "S": "ST", "USERID": "UID"}

// certSubjectDN reads the raw subject (every attribute, unlike
// pkix.Name) in RFC 2253 order.
func certSubjectDN(cert *x509.Certificate) dn {
	var rdns pkix.RDNSequence
	if _, err := asn1.Unmarshal(cert.RawSubject, &rdns); err != nil || len(rdns) == 0 {
		return nil
	}
	out := make(dn, 0, len(rdns))
	for i := len(rdns) - 1; i >= 0; i-- {
		var set []attr
		for _, atv := range rdns[i] {
			t := atv.Type.String()
			if n, ok := attrNames[t]; ok {
				t = n
			}
			set = append(set, attr{t, toString(atv.Value)})
		}
		out = append(out, set)
	}
	return out
}

func toString(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	b, _ := asn1.Marshal(v)
	return "#" + hex.EncodeToString(b)
}

// parseDN reads an RFC 2253 string ("CN=alice,OU=eng+O=acme"), or returns
// nil when s is not one (a plain user name).
func parseDN(s string) dn {
	if !strings.Contains(s, "=") {
		return nil
	}
	var out dn
	var set []attr
	var cur strings.Builder
	var typ string
	inType := true
	flush := func() bool {
		v := strings.TrimSpace(cur.String())
		cur.Reset()
		if inType || typ == "" {
			return false
		}
		t := strings.ToUpper(strings.TrimSpace(typ))
		if a, ok := attrAliases[t]; ok {
			t = a
		}
		set = append(set, attr{t, strings.Trim(v, `"`)})
		typ, inType = "", true
		return true
	}
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch == '\\' && i+1 < len(s):
			if i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
				bs, _ := hex.DecodeString(s[i+1 : i+3])
				cur.Write(bs)
				i += 2
			} else {
				i++
				cur.WriteByte(s[i])
			}
		case ch == '=' && inType:
			typ, inType = cur.String(), false
			cur.Reset()
		case ch == '+' && !inType:
			if !flush() {
				return nil
			}
		case (ch == ',' || ch == ';') && !inType:
			if !flush() {
				return nil
			}
			out, set = append(out, set), nil
		default:
			cur.WriteByte(ch)
		}
	}
	if !flush() {
		return nil
	}
	return append(out, set)
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

func sameSet(a, b []attr) bool {
	if len(a) != len(b) {
		return false
	}
next:
	for _, x := range a {
		for _, y := range b {
			if x.typ == y.typ && x.val == y.val {
				continue next
			}
		}
		return false
	}
	return true
}

// equal: the same RDNs in the same order.
func (d dn) equal(o dn) bool {
	if len(d) != len(o) {
		return false
	}
	for i := range d {
		if !sameSet(d[i], o[i]) {
			return false
		}
	}
	return true
}

// sameRDNs: the same RDNs in any order (a DN written reordered).
func (d dn) sameRDNs(o dn) bool {
	if len(d) != len(o) {
		return false
	}
	used := make([]bool, len(o))
next:
	for _, x := range d {
		for j, y := range o {
			if !used[j] && sameSet(x, y) {
				used[j] = true
				continue next
			}
		}
		return false
	}
	return true
}
