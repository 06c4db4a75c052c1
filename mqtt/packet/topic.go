package packet

import "bytes"

// ValidTopicName reports whether b is a valid PUBLISH topic name: 1 to
// 65,535 bytes [MQTT-4.7.3-1] [MQTT-4.7.3-3], no wildcard characters '+'
// or '#' [MQTT-3.3.2-2] [MQTT-4.7.1-1]. UTF-8 and U+0000 [MQTT-4.7.3-2] are
// checked by the decoder. A 5.0 PUBLISH may carry an empty name with a
// Topic Alias; that is the session layer's case.
func ValidTopicName(b []byte) bool {
	return len(b) > 0 && len(b) <= 65535 && bytes.IndexAny(b, "+#") < 0
}

// ValidTopicFilter reports whether b is a valid topic filter: 1 to 65,535
// bytes [MQTT-4.7.3-1]; '#' only as the whole last level [MQTT-4.7.1-2]
// (3.1.1) / [MQTT-4.7.1-1] (5.0); '+' only as a whole level
// [MQTT-4.7.1-3] (3.1.1) / [MQTT-4.7.1-2] (5.0).
func ValidTopicFilter(b []byte) bool {
	if len(b) == 0 || len(b) > 65535 {
		return false
	}
	for i, c := range b {
		switch c {
		case '#':
			if i != len(b)-1 || (i > 0 && b[i-1] != '/') {
				return false
			}
		case '+':
			if (i > 0 && b[i-1] != '/') || (i < len(b)-1 && b[i+1] != '/') {
				return false
			}
		}
	}
	return true
}
