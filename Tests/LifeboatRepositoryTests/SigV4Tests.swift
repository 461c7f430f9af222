import Foundation
import LifeboatAWSCore
import LifeboatRepository
import Testing

/// The signing example from the AWS S3 SigV4 documentation ("GET Object" with a Range header).
struct SigV4Tests {
    @Test func matchesTheAWSDocumentationExample() throws {
        let signer = SigV4Signer(accessKeyID: "AKIAIOSFODNN7EXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            region: "us-east-1")
        let date = try #require(ISO8601DateFormatter().date(from: "2013-05-24T00:00:00Z"))
        let headers = signer.sign(method: "GET", host: "examplebucket.s3.amazonaws.com", path: "/test.txt", query: [],
            headers: ["Range": "bytes=0-9"], payloadHash: SigV4Signer.payloadHash(Data()), date: date)
        #expect(headers["Authorization"] == "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
    }

    @Test func encodesLikeAWS() {
        #expect(SigV4Signer.encode("a b/c~d_e.f-g") == "a%20b%2Fc~d_e.f-g")
        #expect(SigV4Signer.encode("é") == "%C3%A9")
    }
}
