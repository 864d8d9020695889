import SwiftletCLI
import SwiftletDefaultGuest
import Glibc

exit(SwiftletCommand.main(Array(CommandLine.arguments.dropFirst()), defaultGuest: defaultGuestImage))
