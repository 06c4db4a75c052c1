package main

func Example() {
	main()
	// Output:
	// hello, world
	// broker: no responders
	// events.started: up
}
