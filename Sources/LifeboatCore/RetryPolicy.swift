import Foundation

/// How transient failures are retried, in one place: exponential backoff with full jitter (a random
/// delay between 0 and `min(maxDelay, baseDelay * 2^(attempt-1))`), so many clients failing at once do
/// not retry in lockstep. Only errors that say so (`LifeboatError.retryable`: throttling, a 5xx, a
/// timeout, a dropped or truncated transfer) are retried; permanent ones pass straight through.
/// Used by every AWS call (`AWSClient`) and by `RetryingStore` around any object store.
public struct RetryPolicy: Sendable, Equatable {
    public var attempts: Int
    public var baseDelay: TimeInterval
    public var maxDelay: TimeInterval

    public init(attempts: Int = 6, baseDelay: TimeInterval = 0.2, maxDelay: TimeInterval = 10) {
        self.attempts = max(1, attempts)
        self.baseDelay = baseDelay
        self.maxDelay = maxDelay
    }

    /// The default for calls to AWS and S3.
    public static let aws = RetryPolicy(attempts: 6, baseDelay: 0.25, maxDelay: 10)

    /// The delay before attempt `attempt + 1`, with full jitter.
    public func delay(after attempt: Int) -> TimeInterval {
        Double.random(in: 0...min(maxDelay, baseDelay * pow(2, Double(max(0, attempt - 1)))))
    }

    /// Runs `body` until it succeeds, fails permanently or runs out of attempts. `body` gets the
    /// attempt number (1-based); `retrying` hears about each retried failure (for logs).
    public func run<T>(_ body: (Int) async throws -> T, retrying: (Int, LifeboatError) -> Void = { _, _ in }) async throws -> T {
        var attempt = 1
        while true {
            do {
                return try await body(attempt)
            } catch let error as LifeboatError where error.retryable && attempt < attempts {
                retrying(attempt, error)
                try await Task.sleep(for: .seconds(delay(after: attempt)))
                attempt += 1
            }
        }
    }
}
