package mqtt

import "testing"

func TestTopicSubjectMapping(t *testing.T) {
	cases := []struct{ topic, subject string }{
		{"a", "a"},
		{"a/b/c", "a.b.c"},
		{"/a", "/.a"},
		{"a//b", "a./.b"},
		{"a/", "a./"},
		{"a.b/c", "a//b.c"},
		{"sensors/t1", "sensors.t1"},
		{"$SYS/x", "$SYS.x"},
	}
	for _, c := range cases {
		got, err := TopicToSubject(nil, []byte(c.topic), false)
		if err != nil || string(got) != c.subject {
			t.Errorf("TopicToSubject(%q) = %q, %v; want %q", c.topic, got, err, c.subject)
		}
		if back := SubjectToTopic(nil, got); string(back) != c.topic {
			t.Errorf("SubjectToTopic(%q) = %q; want %q", got, back, c.topic)
		}
	}
}

func TestFilterMapping(t *testing.T) {
	cases := []struct{ filter, subject string }{
		{"a/+/c", "a.*.c"},
		{"a/#", "a.>"},
		{"#", ">"},
		{"+", "*"},
	}
	for _, c := range cases {
		got, err := TopicToSubject(nil, []byte(c.filter), true)
		if err != nil || string(got) != c.subject {
			t.Errorf("filter %q = %q, %v; want %q", c.filter, got, err, c.subject)
		}
	}
	for _, bad := range []string{"", "a b", "a/\tb"} {
		if _, err := TopicToSubject(nil, []byte(bad), false); err == nil {
			t.Errorf("%q: want an error", bad)
		}
	}
}
