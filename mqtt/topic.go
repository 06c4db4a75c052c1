package mqtt

// TopicToSubject appends the NATS subject for an MQTT topic name (or,
// with filter, a topic filter) to dst, with nats-server 2.10+'s mapping:
// '/' between levels → '.', a leading '/' or an empty level → "/.", a
// trailing '/' → "./", '.' → "//", and in filters '+' → '*' and '#' → '>'.
// Whitespace is refused.
func TopicToSubject(dst, topic []byte, filter bool) ([]byte, error) {
	if len(topic) == 0 {
		return dst, ErrBadTopic
	}
	start := len(dst)
	for i, c := range topic {
		switch c {
		case '/':
			switch {
			case i == 0 || dst[len(dst)-1] == '.' && len(dst) > start:
				dst = append(dst, '/', '.')
			case i == len(topic)-1:
				dst = append(dst, '.', '/')
			default:
				dst = append(dst, '.')
			}
		case '.':
			dst = append(dst, '/', '/')
		case ' ', '\t', '\r', '\n', '\f', '\v':
			return dst[:start], ErrBadTopic
		case '+':
			if filter {
				c = '*'
			}
			dst = append(dst, c)
		case '#':
			if filter {
				c = '>'
			}
			dst = append(dst, c)
		default:
			dst = append(dst, c)
		}
	}
	return dst, nil
}

// SubjectToTopic appends the MQTT topic for a NATS subject to dst: the
// reverse of TopicToSubject for literal subjects.
func SubjectToTopic(dst, subj []byte) []byte {
	for i := 0; i < len(subj); i++ {
		c := subj[i]
		next := byte(0)
		if i+1 < len(subj) {
			next = subj[i+1]
		}
		switch {
		case c == '/' && next == '/':
			dst = append(dst, '.')
			i++
		case c == '/' && next == '.':
			dst = append(dst, '/')
			i++
		case c == '.' && next == '/' && i+2 == len(subj):
			dst = append(dst, '/')
			i++
		case c == '.':
			dst = append(dst, '/')
		default:
			dst = append(dst, c)
		}
	}
	return dst
}
