import Testing
@testable import SwiftletAPI

@Suite struct JSONTests {
    @Test(arguments: [
        ("null", JSONValue.null),
        ("true", .bool(true)),
        (" false ", .bool(false)),
        ("0", .integer(0)),
        ("-0", .integer(0)),
        ("42", .integer(42)),
        ("-9223372036854775808", .integer(Int.min)),
        ("9223372036854775808", .double(9223372036854775808.0)),   // beyond Int: a double
        ("2.0", .double(2)),
        ("1e3", .double(1000)),
        ("-1.5E-2", .double(-0.015)),
        (#""""#, .string("")),
        (#""a\"b\\c\/d\b\f\n\r\t""#, .string("a\"b\\c/d\u{8}\u{c}\n\r\t")),
        (#""\u00e9\u20AC\ud83d\ude00""#, .string("é€😀")),
        ("\"é€😀\"", .string("é€😀")),
        (#""\u0000""#, .string("\u{0}")),
        ("[]", .array([])),
        ("[1, [2, []], {}]", .array([1, [2, []], [:]])),
        ("{}", .object([:])),
        (#" { "a" : 1 , "b" : [true, null] } "#, ["a": 1, "b": [true, nil]] as JSONValue),
        ("\t\r\n1\n", .integer(1)),
    ])
    func parsesValid(_ text: String, _ expected: JSONValue) throws {
        #expect(try JSONValue(parsing: text) == expected)
    }

    @Test(arguments: [
        ("", "unexpected end of input"),
        ("   ", "unexpected end of input"),
        ("nul", "invalid literal"),
        ("True", "unexpected 'T'"),
        ("01", "leading zero"),
        ("-", "expected a digit"),
        ("+1", "unexpected '+'"),
        (".5", "unexpected '.'"),
        ("1.", "expected a digit after '.'"),
        ("1e", "expected a digit in an exponent"),
        ("1e400", "out of range"),
        ("-1e400", "out of range"),
        ("NaN", "unexpected 'N'"),
        ("Infinity", "unexpected 'I'"),
        ("[1,]", "unexpected ']'"),
        ("[1 2]", "expected ',' or ']'"),
        ("{\"a\":1,}", "expected a member name"),
        ("{a:1}", "expected a member name"),
        ("{\"a\" 1}", "expected ':'"),
        ("{\"a\":1 \"b\":2}", "expected ',' or '}'"),
        ("{\"a\":1,\"a\":2}", "duplicate member name"),
        ("'a'", "unexpected '''"),
        ("\"abc", "unterminated string"),
        ("\"a\nb\"", "control character"),
        ("\"a\tb\"", "control character"),
        (#""\x""#, "invalid escape"),
        (#""\u12""#, "not a hex digit"),
        (#""\ud83d""#, "unpaired surrogate"),
        (#""\ud83dx""#, "unpaired surrogate"),
        (#""\ud83d\u0041""#, "unpaired surrogate"),
        (#""\ude00""#, "unpaired surrogate"),
        ("1 2", "after the value"),
        ("{} x", "after the value"),
        ("// c\n1", "unexpected '/'"),
        ("[1]\u{0}", "after the value"),
    ])
    func rejectsInvalid(_ text: String, _ fragment: String) {
        #expect {
            try JSONValue(parsing: text)
        } throws: { error in
            (error as? JSONError).map { $0.description.contains(fragment) } ?? false
        }
    }

    @Test func rejectsInvalidUTF8() {
        for bytes: [UInt8] in [[0x22, 0xC3, 0x22], [0x22, 0xC0, 0xAF, 0x22], [0x22, 0xED, 0xA0, 0x80, 0x22], [0x22, 0xFF, 0x22]] {
            #expect(throws: JSONError.self) { try JSONValue(parsing: bytes) }
        }
    }

    @Test func depthLimit() throws {
        let ok = String(repeating: "[", count: 64) + String(repeating: "]", count: 64)
        _ = try JSONValue(parsing: ok)
        let deep = String(repeating: "[", count: 65) + String(repeating: "]", count: 65)
        #expect(throws: JSONError("nested deeper than 64 levels", at: 64)) { try JSONValue(parsing: deep) }
        // Far deeper input fails the same way, without exhausting the stack.
        let hostile = String(repeating: "{\"a\":", count: 100_000)
        #expect(throws: JSONError.self) { try JSONValue(parsing: hostile) }
        #expect(throws: JSONError.self) { try JSONValue(parsing: "[[1]]", maximumDepth: 1) }
    }

    @Test func serializes() {
        let value: JSONValue = ["b": 1, "a": [true, false, nil, 1.5, "x"], "s": "q\"\\\n\u{1}é"]
        #expect(value.serialized == #"{"b":1,"a":[true,false,null,1.5,"x"],"s":"q\"\\\n\u0001é"}"#)
        #expect(JSONValue.double(.infinity).serialized == "null")
        #expect(JSONValue.double(1e-7).serialized == "1e-07")
        #expect(JSONValue.object([:]).serialized == "{}")
    }

    @Test func roundTrips() throws {
        let texts = [#"{"x":[1,-2,3.25,1e+100,"\u0000\ud83d\ude00",{"y":null}],"z":false}"#, "[]", "\"\"", "-0.0", "[1e-300]"]
        for text in texts {
            let value = try JSONValue(parsing: text)
            #expect(try JSONValue(parsing: value.serializedBytes) == value)
        }
    }

    @Test func objectsKeepOrderAndCompareWithout() {
        var object = JSONObject()
        object["z"] = 1
        object["a"] = 2
        object["m"] = 3
        #expect(object.keys == ["z", "a", "m"])
        object["a"] = nil
        #expect(object.keys == ["z", "m"] && object["m"] == 3)
        let reordered: JSONObject = ["m": 3, "z": 1]
        #expect(object == reordered)
        #expect(JSONValue.object(object) != ["m": 3, "z": 2])
    }

    @Test func accessors() throws {
        let value = try JSONValue(parsing: #"{"count": 2, "name": "x", "ok": true, "list": [1]}"#)
        #expect(value["count"]?.intValue == 2)
        #expect(value["name"]?.stringValue == "x")
        #expect(value["ok"]?.boolValue == true)
        #expect(value["list"]?.arrayValue == [1])
        #expect(value["missing"] == nil)
        #expect(JSONValue.integer(1)["x"] == nil)
        #expect(JSONValue.double(2).intValue == nil)
    }
}
