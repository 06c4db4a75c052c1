package main

func Example() {
	main()
	// Output:
	// connected to embedded
	// it is now
}
