package main

func Example() {
	main()
	// Output:
	// app session ann via STANDARD
	// ops saw users.ann.status: online
	// nats: permissions violation: Permissions Violation for Publish to "users.bob.status"
	// nats: Authorization Violation
}
