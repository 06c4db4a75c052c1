package subject_test

import (
	"fmt"

	"github.com/busbar/busbar/subject"
)

// Validate what a client sends, then match a published subject against
// subscription filters.
func Example() {
	for _, s := range []string{"orders.eu.new", "orders.*", "orders..new", "a*b.c"} {
		fmt.Printf("%-14s literal=%-5v filter=%v\n", s, subject.ValidLiteral([]byte(s)), subject.ValidFilter([]byte(s)))
	}
	pub := []byte("orders.eu.new")
	for _, f := range []string{"orders.*.new", "orders.>", "orders.*", ">", "orders.EU.new"} {
		fmt.Printf("%-14s matches %s: %v\n", f, pub, subject.Match([]byte(f), pub))
	}
	// Output:
	// orders.eu.new  literal=true  filter=true
	// orders.*       literal=false filter=true
	// orders..new    literal=false filter=false
	// a*b.c          literal=true  filter=true
	// orders.*.new   matches orders.eu.new: true
	// orders.>       matches orders.eu.new: true
	// orders.*       matches orders.eu.new: false
	// >              matches orders.eu.new: true
	// orders.EU.new  matches orders.eu.new: false
}
