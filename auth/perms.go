package auth

import "github.com/busbar/busbar/subject"

// SubjectPermission allows and denies subjects (filters with * and >).
// Deny wins over allow; an empty Allow list allows everything not denied.
type SubjectPermission struct {
	Allow []string
	Deny  []string
}

// Permissions is what an identity may publish and subscribe to. A nil
// *Permissions allows everything.
type Permissions struct {
	Publish        *SubjectPermission
	Subscribe      *SubjectPermission
	AllowResponses *ResponsePermission // nil: no implicit reply permission
}

func (sp *SubjectPermission) allows(subj []byte) bool {
	if sp == nil {
		return true
	}
	for _, d := range sp.Deny {
		if subject.Match([]byte(d), subj) {
			return false
		}
	}
	if len(sp.Allow) == 0 {
		return true
	}
	for _, a := range sp.Allow {
		if subject.Match([]byte(a), subj) {
			return true
		}
	}
	return false
}

// CanPublish reports whether publishing to the literal subject is allowed.
func (p *Permissions) CanPublish(subj []byte) bool {
	return p == nil || p.Publish.allows(subj)
}

// CanSubscribe reports whether subscribing to filter (in queue group
// queue, or nil) is allowed. A filter with wildcards is allowed when an
// allow entry covers it token by token.
func (p *Permissions) CanSubscribe(filter, queue []byte) bool {
	if p == nil || p.Subscribe == nil {
		return true
	}
	sp := p.Subscribe
	for _, d := range sp.Deny {
		if subject.Match([]byte(d), filter) {
			return false
		}
	}
	if len(sp.Allow) == 0 {
		return true
	}
	for _, a := range sp.Allow {
		if subject.Match([]byte(a), filter) {
			return true
		}
	}
	return false
}
