from rftkit.cli import main

main()
