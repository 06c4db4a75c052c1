package leafnode

import (
	"bytes"
	"encoding/json"
	"strconv"

	"github.com/busbar/busbar/internal/wire"
)

// connectInfo is the leaf CONNECT JSON, with nats-server's field names
// (its leafConnectInfo). busbar never sends a cluster name (two leaves
// with one cluster name would be taken for one cluster by the hub) and
// never asks for compression.
type connectInfo struct {
	Version       string   `json:"version,omitempty"`
	Nkey          string   `json:"nkey,omitempty"`
	JWT           string   `json:"jwt,omitempty"`
	Sig           string   `json:"sig,omitempty"`
	User          string   `json:"user,omitempty"`
	Pass          string   `json:"pass,omitempty"`
	Token         string   `json:"auth_token,omitempty"`
	ID            string   `json:"server_id,omitempty"`
	Name          string   `json:"name,omitempty"`
	Headers       bool     `json:"headers,omitempty"`
	DenyPub       []string `json:"deny_pub,omitempty"`
	RemoteAccount string   `json:"remote_account,omitempty"`
	Proto         int      `json:"protocol,omitempty"`
}

// protoVersion is the leaf protocol level announced in CONNECT: 1 (info
// updates), not nats-server's 2 (message tracing, which busbar lacks).
const protoVersion = 1

// appendConnect appends "CONNECT {json}\r\n".
func appendConnect(b []byte, ci *connectInfo) []byte {
	j, _ := json.Marshal(ci) // a struct of strings and bools: cannot fail
	b = append(b, "CONNECT "...)
	b = append(b, j...)
	return append(b, '\r', '\n')
}

// appendSub appends "LS+ subject\r\n" or "LS+ subject queue weight\r\n".
func appendSub(b, subject, queue []byte, weight int) []byte {
	b = append(b, "LS+ "...)
	b = append(b, subject...)
	if len(queue) > 0 {
		b = append(b, ' ')
		b = append(b, queue...)
		b = append(b, ' ')
		b = strconv.AppendInt(b, int64(weight), 10)
	}
	return append(b, '\r', '\n')
}

// appendUnsub appends "LS- subject [queue]\r\n".
func appendUnsub(b, subject, queue []byte) []byte {
	b = append(b, "LS- "...)
	b = append(b, subject...)
	if len(queue) > 0 {
		b = append(b, ' ')
		b = append(b, queue...)
	}
	return append(b, '\r', '\n')
}

// appendMsgLine appends the control line of a message to the hub, in
// nats-server's forms:
//
//	LMSG subject [reply] size
//	LMSG subject + reply queue... size     (queues, with a reply)
//	LMSG subject | queue... size           (queues, no reply)
//	HMSG ... hdr size                      (with headers, hdr >= 0)
func appendMsgLine(b, subject, reply []byte, queues [][]byte, hdr, size int) []byte {
	if hdr >= 0 {
		b = append(b, "HMSG "...)
	} else {
		b = append(b, "LMSG "...)
	}
	b = append(b, subject...)
	b = append(b, ' ')
	if len(queues) > 0 {
		if len(reply) > 0 {
			b = append(b, '+', ' ')
			b = append(b, reply...)
			b = append(b, ' ')
		} else {
			b = append(b, '|', ' ')
		}
		for _, q := range queues {
			b = append(b, q...)
			b = append(b, ' ')
		}
	} else if len(reply) > 0 {
		b = append(b, reply...)
		b = append(b, ' ')
	}
	if hdr >= 0 {
		b = strconv.AppendInt(b, int64(hdr), 10)
		b = append(b, ' ')
	}
	b = strconv.AppendInt(b, int64(size), 10)
	return append(b, '\r', '\n')
}

// msgLineLen bounds appendMsgLine's output.
func msgLineLen(subject, reply []byte, queues [][]byte) int {
	n := len(subject) + len(reply) + 40
	for _, q := range queues {
		n += len(q) + 1
	}
	return n
}

// MQTT publishes cross the link with nats-server's "Nmqtt-Pub" header
// carrying the QoS, so MQTT subscribers elsewhere get min(QoS, granted).
const mqttPubHeader = "Nmqtt-Pub"

var mqttHeaders = [3][]byte{
	[]byte("NATS/1.0\r\n" + mqttPubHeader + ":0\r\n\r\n"),
	[]byte("NATS/1.0\r\n" + mqttPubHeader + ":1\r\n\r\n"),
	[]byte("NATS/1.0\r\n" + mqttPubHeader + ":2\r\n\r\n"),
}

// logIDHeader carries an MQTT publish's id in a shared store's publish
// log (broker.LogID) from busbar to busbar.
const logIDHeader = "Busbar-Id"

// mqttIDHeader is the header block of an MQTT publish at qos with its
// publish log id.
func mqttIDHeader(qos uint8, id string) []byte {
	b := make([]byte, 0, len(mqttHeaders[2])+len(logIDHeader)+len(id)+3)
	b = append(b, mqttHeaders[min(qos, 2)][:len(mqttHeaders[0])-2]...) // without the blank line
	b = append(b, logIDHeader...)
	b = append(b, ':')
	b = append(b, id...)
	return append(b, "\r\n\r\n"...)
}

// mqttHeader reads the headers busbar sets on an MQTT publish in a NATS
// header block: the QoS of Nmqtt-Pub (ok: present), the Busbar-Id of a
// publish log (nil: none), and whether those are the only headers (the
// block can then be dropped). Case-sensitive, as nats-server writes them.
func mqttHeader(h []byte) (qos uint8, id []byte, only, ok bool) {
	for q, std := range mqttHeaders {
		if string(h) == string(std) {
			return uint8(q), nil, true, true
		}
	}
	only = true
	for n := 0; len(h) > 0; n++ {
		i := bytes.IndexByte(h, '\n')
		if i < 0 {
			i = len(h) - 1
		}
		line := bytes.TrimRight(h[:i+1], "\r\n")
		h = h[i+1:]
		if n == 0 || len(line) == 0 { // the NATS/1.0 line, the end
			continue
		}
		if v, found := bytes.CutPrefix(line, []byte(mqttPubHeader+":")); found {
			if v = wire.TrimSpace(v); len(v) > 0 && v[0] >= '0' && v[0] <= '2' {
				qos, ok = v[0]-'0', true
				continue
			}
		} else if v, found := bytes.CutPrefix(line, []byte(logIDHeader+":")); found {
			id = wire.TrimSpace(v)
			continue
		}
		only = false
	}
	return qos, id, only && ok, ok
}
