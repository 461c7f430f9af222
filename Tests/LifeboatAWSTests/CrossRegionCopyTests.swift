import Foundation
import LifeboatAWS
import LifeboatAWSCore
import LifeboatCore
import LifeboatPostgres
import LifeboatRepository
import LifeboatTesting
import Testing

/// The seed's copy of a cluster snapshot to a second region under that region's own key.
@Suite(.serialized) struct CrossRegionCopyTests {
    /// The presigned URL AWS needs for encrypted cross-region copies, checked against botocore's
    /// (the AWS CLI's signer, an independent implementation) for the same request and second.
    @Test func presignedURLMatchesBotocore() async throws {
        let script = """
            from botocore.auth import SigV4QueryAuth
            from botocore.awsrequest import AWSRequest
            from botocore.credentials import Credentials
            req = AWSRequest(method='GET', url='https://rds.us-west-2.amazonaws.com/', params={
                'Action': 'CopyDBClusterSnapshot', 'Version': '2014-10-31',
                'SourceDBClusterSnapshotIdentifier': 'arn:aws:rds:us-west-2:123456789012:cluster-snapshot:nightly 1',
                'TargetDBClusterSnapshotIdentifier': 'nightly-dr', 'KmsKeyId': 'alias/dr~key',
                'DestinationRegion': 'eu-central-1'})
            SigV4QueryAuth(Credentials('AKIDEXAMPLE', 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY', 'session/token=='),
                'rds', 'us-west-2', expires=3600).add_auth(req)
            print(req.url)
            """
        let result = try await CommandRunner.runSeparately(MotoServer.python(), ["-c", script], check: false)
        #expect(result.status == 0, "\(result.errors)")
        let url = try #require(URLComponents(string: result.output.trimmingCharacters(in: .whitespacesAndNewlines)))
        let theirs = Dictionary(uniqueKeysWithValues: (url.queryItems ?? []).map { ($0.name, $0.value ?? "") })
        let date = try #require(theirs["X-Amz-Date"])
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        let signer = SigV4Signer(accessKeyID: "AKIDEXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            sessionToken: "session/token==", region: "us-west-2", service: "rds")
        let ours = Dictionary(uniqueKeysWithValues: signer.presign(method: "GET", host: "rds.us-west-2.amazonaws.com", path: "/",
            query: [("Action", "CopyDBClusterSnapshot"), ("Version", "2014-10-31"),
                    ("SourceDBClusterSnapshotIdentifier", "arn:aws:rds:us-west-2:123456789012:cluster-snapshot:nightly 1"),
                    ("TargetDBClusterSnapshotIdentifier", "nightly-dr"), ("KmsKeyId", "alias/dr~key"), ("DestinationRegion", "eu-central-1")],
            date: try #require(f.date(from: date)), expires: 3600).map { ($0.0, $0.1) })
        #expect(ours == theirs)
        #expect(ours["X-Amz-Signature"]?.count == 64)
    }

    @Test func snapshotCopiedToASecondRegionUnderThatRegionsKey() async throws {
        let endpoint = try await StrictAWS.shared.url().absoluteString
        func explicit(_ region: String) -> AWSAccountOverrides {
            AWSAccountOverrides(region: region, endpoint: endpoint, accessKeyID: MotoServer.accessKey, secretAccessKey: MotoServer.secretKey)
        }
        let kms = AWSService.kms
        func createKey(_ region: String) async throws -> String {
            let answer = try await AWSClient(kms, overrides: explicit(region)).json("TrentService.CreateKey", ["Description": region])
            return try #require((answer["KeyMetadata"] as? [String: Any])?["KeyId"] as? String)
        }
        let drKey = try await createKey("eu-central-1")
        let primaryKey = try await createKey("us-west-1")

        let source = try AWSClient(.rds, overrides: explicit("us-west-1"))
        _ = try await source.query("CreateDBCluster", version: "2014-10-31", [("DBClusterIdentifier", "omni"), ("Engine", "aurora-postgresql"),
            ("MasterUsername", "postgres"), ("MasterUserPassword", "a-long-password")])
        _ = try await AuroraClusters(client: source).createSnapshot(cluster: "omni", snapshot: "omni-nightly", tags: ["Purpose": "nightly"])

        let dr = AuroraClusters(client: try AWSClient(.rds, overrides: explicit("eu-central-1")))
        let copy = try await dr.copySnapshot("omni-nightly", from: "us-west-1", to: "omni-nightly-dr", kmsKeyID: drKey)
        #expect(copy.identifier == "omni-nightly-dr")
        let ready = try await dr.waitSnapshotAvailable("omni-nightly-dr", timeout: 30, poll: 0.2)
        #expect(ready.arn?.contains(":eu-central-1:") == true, "the copy lives in the second region")
        // The second region restores from it on its own.
        _ = try await dr.restoreFromSnapshot("omni-nightly-dr", engine: "aurora-postgresql", into: AuroraRestoreTarget(cluster: "omni-dr"))
        #expect(try await dr.describe("omni-dr").identifier == "omni-dr")
        // The first region's key is not the second region's: refused, nothing copied.
        await #expect(throws: LifeboatError.self) {
            _ = try await dr.copySnapshot("omni-nightly", from: "us-west-1", to: "omni-nightly-wrong-key", kmsKeyID: "arn:aws:kms:us-west-1:123456789012:key/\(primaryKey)")
        }
        await #expect(throws: LifeboatError.self) { _ = try await dr.snapshot("omni-nightly-wrong-key") }
    }
}
