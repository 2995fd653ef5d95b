from myjepa.cli import main

main()
