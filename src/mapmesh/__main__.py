from mapmesh.cli.entry import main

main()
